//! Integration tests: the real server on an ephemeral port, spoken to over WebSocket and HTTP.
//! Numbers in comments refer to the conformance checklist of PROTOCOL.md §15.

mod common;

mod app_store;
mod app_store_cli;
mod app_store_db;
mod app_store_outage;
mod bad_input;
mod cache;
mod cli;
mod client_events;
mod cluster;
mod cluster_faults;
mod cluster_order;
mod cluster_outage;
mod cluster_presence;
mod cluster_replay;
mod compat;
mod connection;
mod dashboard;
mod fallback_client;
mod http_fallback;
mod http_fallback_cluster;
mod http_fallback_edges;
mod liveness;
mod metrics;
mod netfault;
mod presence;
mod process;
mod raw_ws;
mod redis_server;
mod rest_auth;
mod rest_endpoints;
mod rest_queries;
mod sentinel;
mod shutdown;
mod slow_consumer;
mod spawned;
mod subscribe;
mod tls;
mod tls_rotation;
mod users;
mod webhook_lifecycle;
mod webhook_receiver;
mod webhooks;
