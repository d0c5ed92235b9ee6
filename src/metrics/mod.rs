//! Readings as every layer names and writes them: series names ([`series`]), the
//! agent's JSON document that the agent serves and the `agent` probe reads
//! ([`agent_report`]), the Prometheus text exposition format ([`exposition`]), and
//! Prometheus remote write's requests ([`remote_write`]).

pub mod agent_report;
pub mod exposition;
pub mod remote_write;
pub mod series;
