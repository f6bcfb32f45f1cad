pub mod fetch;
pub mod files;
pub mod lock;
pub mod manifest;
