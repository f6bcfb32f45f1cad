pub mod cache;
pub mod retry;
pub mod stream;
