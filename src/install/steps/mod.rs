pub mod apiserver_lb;
pub mod distribute;
pub mod nginx;
pub mod os_prepare;
pub mod preflight;
pub mod registry;
pub mod runtime;
