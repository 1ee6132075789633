//! Black-box tests: each spawns the real `certhub` binary with a fresh database.

mod helpers;

mod access_matrix;
mod accounts;
mod agent_e2e;
mod agent_jobs;
mod agent_wine;
mod audit;
mod audit_api;
mod catalogue;
mod cli;
mod config;
mod devices;
mod durability;
mod faults;
mod health;
mod hostile_text;
mod jobs;
mod limits;
mod master_key;
mod office_day;
mod office_pages;
mod office_people;
mod openapi;
mod portal;
mod portal_browser;
mod portal_pages;
mod postgres_outage;
mod schemathesis;
mod security;
mod shutdown;
mod tls;
mod upload;
mod vault;
mod watcher;
mod wire_trust;
