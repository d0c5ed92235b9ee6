//! Readings as every layer names and writes them: series names ([`series`]), the
//! agent's JSON document that the agent serves and the `agent` probe reads
//! ([`agent_report`]), and the Prometheus text exposition format ([`exposition`]).

pub mod agent_report;
pub mod exposition;
pub mod series;
