//! Devices: the office's PCs that run the agent. Provisioning and administration, pairing
//! (enrollment code, device key, device authentication), heartbeats and last contact, who may
//! target which device, and getting the agent onto a PC. HTTP handlers are in `routes`.

pub mod authentication;
pub mod cache;
pub mod contact;
pub mod distribution;
pub mod enrollment;
pub mod entity;
pub mod heartbeat;
mod installed;
pub mod limits;
pub mod pairing;
pub mod policy;
pub mod provisioning;
pub mod routes;
pub mod targeting;

pub use enrollment::EnrollmentCode;
pub use entity::{Column, Device, Devices};
pub use targeting::{find_in_org, may_be_targeted_by, may_target, targetable};
