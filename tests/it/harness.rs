//! Self-tests of the harness: the reference registry takes our test images, and skopeo reads them back.

use crate::support::images::{make_image, Format, ImageSpec};
use crate::support::registry::{Mode, Registry};
use crate::support::run_ok;
use std::process::Command;

fn inspect_digest(reg: &Registry, reference: &str) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--raw"]).args(reg.skopeo_flags("")).arg(reg.docker_ref(reference));
    let raw = run_ok(&mut cmd).stdout;
    airgap::digest::Digest::of_bytes(&raw).to_string()
}

#[test]
fn registry_modes_accept_and_serve_test_images() {
    let layout = tempfile::tempdir().unwrap();
    let multi = make_image(layout.path(), "multi", &ImageSpec::multi(&["linux/amd64", "linux/arm64"], 1));
    let docker = make_image(layout.path(), "docker", &ImageSpec { format: Format::Docker, ..ImageSpec::multi(&["linux/amd64", "linux/arm/v7"], 2) });
    for mode in [Mode::Plain, Mode::Tls, Mode::BasicAuth { user: "u".into(), password: "p4ss".into() }] {
        let reg = Registry::start(mode);
        reg.push_layout(layout.path(), "multi", "test/multi:1");
        reg.push_layout(layout.path(), "docker", "library/docker:2");
        assert_eq!(inspect_digest(&reg, "test/multi:1"), multi.digest.to_string());
        assert_eq!(inspect_digest(&reg, "library/docker:2"), docker.digest.to_string());
    }
}
