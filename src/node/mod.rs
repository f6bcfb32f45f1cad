pub mod checks;
pub mod components;
pub mod docker;
pub mod facts;
pub mod files;
pub mod packages;
pub mod service;
