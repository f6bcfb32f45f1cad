//! OCI: image references, pulling from registries, image layouts.
