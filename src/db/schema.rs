// @generated automatically by Diesel CLI (`diesel print-schema` against PostgreSQL).

diesel::table! {
    api_tokens (id) {
        id -> Int8,
        name -> Text,
        role -> Text,
        company_id -> Nullable<Int8>,
        secret_hash -> Text,
        prefix -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    assignments (device_id) {
        device_id -> Int8,
        server_id -> Nullable<Int8>,
        epoch -> Int8,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    collectors (id) {
        id -> Int8,
        company_id -> Int8,
        name -> Text,
        kind -> Text,
        target -> Text,
        params -> Text,
        expected_duration -> Text,
        schedule -> Nullable<Text>,
        time_zone -> Text,
        misfire -> Text,
        next_due_at -> Nullable<Int8>,
        created_at -> Int8,
        updated_at -> Int8,
    }
}

diesel::table! {
    companies (id) {
        id -> Int8,
        name -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    config (id) {
        id -> Int8,
        monitor_server_current -> Int8,
        max_monitors_per_server -> Int4,
        poll_interval_ms -> Int8,
        timeout_ms -> Int8,
        alert_threshold -> Int4,
        critical_threshold -> Int4,
        balance_method -> Text,
        updated_at -> Timestamp,
        unreachable_after -> Int4,
        retention_hours -> Int4,
        heartbeat_ms -> Int8,
        validate_ms -> Int8,
        missed_checks -> Int4,
        minute_retention_days -> Int4,
        hour_retention_days -> Int4,
    }
}

diesel::table! {
    devices (id) {
        id -> Int8,
        company_id -> Int8,
        name -> Text,
        address -> Text,
        kind -> Text,
        enabled -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        expected_status -> Nullable<Int4>,
        monitoring_wanted -> Bool,
    }
}

diesel::table! {
    events (id) {
        id -> Int8,
        device_id -> Int8,
        company_id -> Int8,
        epoch -> Int8,
        from_state -> Text,
        to_state -> Text,
        at -> Timestamp,
        reason -> Text,
        kind -> Text,
    }
}

diesel::table! {
    monitor_servers (id) {
        id -> Int8,
        host -> Text,
        port -> Int4,
        registered_at -> Timestamp,
    }
}

diesel::table! {
    nodes (id) {
        id -> Int8,
        role -> Text,
        address -> Text,
        server_id -> Nullable<Int8>,
        counter -> Int8,
        started_at -> Timestamp,
        last_beat_at -> Timestamp,
        memory_bytes -> Nullable<Int8>,
        cpu_percent -> Nullable<Float8>,
        threads -> Nullable<Int4>,
        version -> Nullable<Text>,
    }
}

diesel::table! {
    jobs (id) {
        id -> Int8,
        collector_id -> Int8,
        lane -> Text,
        status -> Text,
        position -> Nullable<Int8>,
        forced -> Bool,
        node_id -> Nullable<Int8>,
        enqueued_at -> Int8,
        started_at -> Nullable<Int8>,
        ended_at -> Nullable<Int8>,
        stop_requested_at -> Nullable<Int8>,
        progress_done -> Int8,
        progress_total -> Int8,
        rows_written -> Int8,
        error -> Nullable<Text>,
        due_at -> Nullable<Int8>,
    }
}

diesel::table! {
    job_outputs (job_id) {
        job_id -> Int8,
        output -> Text,
    }
}

diesel::table! {
    job_parts (job_id, part) {
        job_id -> Int8,
        part -> Int8,
        body -> Text,
    }
}

diesel::table! {
    latest_polls (device_id) {
        device_id -> Int8,
        epoch -> Int8,
        at_ms -> Int8,
        data -> Binary,
    }
}

diesel::table! {
    queue_lanes (lane) {
        lane -> Text,
        max_running -> Int4,
        paused -> Bool,
        requeue_interrupted -> Bool,
    }
}

diesel::table! {
    rollup_marks (tier) {
        tier -> Int2,
        until_ms -> Int8,
    }
}

diesel::table! {
    rollups (tier, device_id, at_ms) {
        tier -> Int2,
        device_id -> Int8,
        at_ms -> Int8,
        samples -> Int8,
        data -> Binary,
    }
}

diesel::table! {
    blocks (id) {
        id -> Int8,
        device_id -> Int8,
        at_ms -> Int8,
        end_ms -> Int8,
        polls -> Int8,
        samples -> Int8,
        data -> Binary,
    }
}

diesel::table! {
    polls (id) {
        id -> Int8,
        device_id -> Int8,
        epoch -> Int8,
        at_ms -> Int8,
        samples -> Int8,
        data -> Binary,
    }
}

diesel::table! {
    samples (id) {
        id -> Int8,
        device_id -> Int8,
        epoch -> Int8,
        at_ms -> Int8,
        metric -> Text,
        value -> Float8,
    }
}

diesel::table! {
    series (id) {
        id -> Int8,
        device_id -> Int8,
        name_id -> Int8,
    }
}

diesel::table! {
    series_names (id) {
        id -> Int8,
        name -> Text,
    }
}

diesel::joinable!(api_tokens -> companies (company_id));
diesel::joinable!(assignments -> devices (device_id));
diesel::joinable!(assignments -> monitor_servers (server_id));
diesel::joinable!(collectors -> companies (company_id));
diesel::joinable!(devices -> companies (company_id));
diesel::joinable!(job_outputs -> jobs (job_id));
diesel::joinable!(jobs -> collectors (collector_id));
diesel::joinable!(job_parts -> jobs (job_id));
diesel::joinable!(nodes -> monitor_servers (server_id));

diesel::allow_tables_to_appear_in_same_query!(
    api_tokens,
    assignments,
    blocks,
    collectors,
    companies,
    config,
    devices,
    events,
    job_outputs,
    job_parts,
    jobs,
    monitor_servers,
    latest_polls,
    nodes,
    polls,
    queue_lanes,
    rollup_marks,
    rollups,
    samples,
    series,
    series_names,
);
