//! The HTTP edge: the one error-to-HTTP mapping, middleware, the route table and OpenAPI.

pub mod assets;
pub mod bodies;
mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod proxy;
pub mod routes;
pub mod tls;
