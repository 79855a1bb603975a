"""The published metrics, per source. docs/metrics.md describes each one; keep them in step.

Names get the ``codetogether_`` namespace in Prometheus and the StatsD prefix
(``codetogether.``) in StatsD.
"""

from __future__ import annotations

from ct.metrics.model import COUNTER, GAUGE, INFO, MetricDef

# ``Edge.snapshot()``
EDGE_METRICS = (
    MetricDef("users_online", GAUGE,
              "Unique users online: distinct people in sessions plus team-presence members.",
              "users_online"),
    MetricDef("users_in_sessions", GAUGE, "Distinct people taking part in sessions.",
              "users_in_sessions"),
    MetricDef("sessions_active", GAUGE, "Sessions currently open on this edge.", "sessions"),
    MetricDef("session_connections", GAUGE,
              "Active session connections: participants' websockets currently connected.",
              "connections"),
    MetricDef("session_participants", GAUGE,
              "Participants holding a seat in a session (connected or within the resume window).",
              "people"),
    MetricDef("session_participants_limit", GAUGE,
              "Cap on simultaneous people in sessions (CT_MAXCONNECTIONS; 0: no cap).",
              "max_people"),
    MetricDef("presence_connections", GAUGE, "Team-presence websockets currently connected.",
              "presence_connections"),
    MetricDef("server_lag_seconds", GAUGE,
              "Average server lag: how late the event loop ran its timers, recent average.",
              "lag_ms", scale=0.001),
    MetricDef("process_cpu_cores", GAUGE,
              "CPU this edge process used over the last report interval, in cores "
              "(1: one core busy; the event loop uses one).", "cpu"),
    MetricDef("sessions_hosted_total", COUNTER, "Sessions hosted since the process started.",
              "sessions_hosted_total"),
    MetricDef("relay_frames_received_total", COUNTER,
              "Frames the relay received from participants.", "frames_in_total"),
    MetricDef("relay_frames_delivered_total", COUNTER,
              "Frames the relay delivered (one per recipient).", "deliveries_total"),
    MetricDef("relay_received_bytes_total", COUNTER,
              "Payload bytes the relay received from participants.", "bytes_in_total"),
    MetricDef("relay_sent_bytes_total", COUNTER,
              "Payload bytes the relay sent to participants.", "bytes_out_total"),
    MetricDef("session_resumes_total", COUNTER,
              "Participants that reconnected and resumed (recovered or not).", "resumes_total"),
    MetricDef("session_resumes_unrecovered_total", COUNTER,
              "Resumes where the edge could not replay the gap (recovered=false).",
              "resumes_unrecovered_total"),
    MetricDef("protocol_errors_total", COUNTER,
              "Protocol errors sent to clients, by error code.", "errors", label="code"),
    MetricDef("edge_info", INFO, "This edge: id, region and version (value is always 1).",
              info_keys=("edge", "region", "version")),
)

# ``DownloadCounter.snapshot()`` (ct/edge/downloads.py)
DOWNLOAD_METRICS = (
    MetricDef("client_downloads_total", COUNTER,
              "Completed downloads of plugin/extension packages from /clients/, by client.",
              "downloads", label="client"),
)

# ``TurnStats.snapshot()`` (ct/turn/metrics.py), when the TURN relay runs in this process
TURN_METRICS = (
    MetricDef("turn_allocations_active", GAUGE, "TURN allocations currently alive.",
              "allocations_active"),
    MetricDef("turn_allocations_total", COUNTER, "TURN allocations created.",
              "allocations_total"),
    MetricDef("turn_permissions_active", GAUGE, "TURN permissions currently installed.",
              "permissions_active"),
    MetricDef("turn_channels_active", GAUGE, "TURN channels currently bound.",
              "channels_active"),
    MetricDef("turn_relayed_bytes_total", COUNTER,
              "Bytes relayed by TURN; direction to_peer is client->peer, to_client peer->client.",
              {"to_peer": "bytes_to_peer", "to_client": "bytes_to_client"}, label="direction"),
    MetricDef("turn_relayed_packets_total", COUNTER, "Packets relayed by TURN, by direction.",
              {"to_peer": "packets_to_peer", "to_client": "packets_to_client"},
              label="direction"),
    MetricDef("turn_auth_failures_total", COUNTER, "TURN requests refused for bad credentials.",
              "auth_failures"),
    MetricDef("turn_binding_requests_total", COUNTER, "STUN binding requests answered.",
              "binding_requests"),
    MetricDef("turn_dropped_packets_total", COUNTER,
              "Packets TURN dropped (no permission, full buffers, bad input).",
              "dropped_packets"),
    MetricDef("turn_refusals_total", COUNTER, "TURN requests refused, by reason.",
              "refusals", label="reason"),
)

# ``AvReports.snapshot()`` (ct/edge/av.py): the clients' call counters, when A/V is on
AV_METRICS = (
    MetricDef("av_calls", GAUGE, "Calls: sessions with two or more participants in the call.",
              "calls"),
    MetricDef("av_participants_in_calls", GAUGE, "Participants in a call (their own reports).",
              "participants_in_calls"),
    MetricDef("av_peer_connections", GAUGE,
              "Connected call peer connections by path (relayed through TURN, or direct), "
              "as the participants report them: each connection counted by both ends.",
              "peer_connections", label="path"),
    MetricDef("av_reports_total", COUNTER, "Call reports (av-report) taken from clients.",
              "reports_total"),
    MetricDef("av_reports_ignored_total", COUNTER,
              "Call reports ignored because they came sooner than 2 s after the last.",
              "reports_ignored"),
)

# Hook for the locator: its callable returns these keys (any subset).
LOCATOR_METRICS = (
    MetricDef("locator_placements_total", COUNTER,
              "Placements decided by the locator, by kind (session, presence).",
              "placements", label="kind"),
    MetricDef("locator_placement_failures_total", COUNTER,
              "Placement requests no edge could take.", "placement_failures_total"),
    MetricDef("locator_placements_rate_limited_total", COUNTER,
              "Placement requests refused (429) by the per-address limit "
              "(CT_PLACEMENT_RATE, CT_PLACEMENT_BURST).", "placements_refused_total"),
    MetricDef("locator_edges_online", GAUGE, "Edges connected to the locator.", "edges_online"),
    MetricDef("locator_edges_suspended", GAUGE, "Connected edges that are suspended.",
              "edges_suspended"),
    MetricDef("locator_edges_draining", GAUGE,
              "Connected edges that are stopping (CT_DRAIN_TIMEOUT): no new sessions.",
              "edges_draining"),
    MetricDef("locator_locators_alive", GAUGE,
              "Locators alive on this database, this one included (several locators).",
              "locators_alive"),
    MetricDef("locator_database_latency_seconds", GAUGE,
              "Round trip of a SELECT 1 to the database, in seconds (above 0.010: a warning).",
              "database_latency_seconds"),
    MetricDef("locator_peer_latency_seconds", GAUGE,
              "Highest round trip to another live locator, in seconds (above 0.010: a warning).",
              "peer_latency_seconds"),
)

# Hook for the edge's link to the locator: its callable returns these keys (any subset).
EDGE_LINK_METRICS = (
    MetricDef("edge_link_connected", GAUGE, "1 while the edge's link to the locator is up.",
              "connected"),
    MetricDef("edge_link_outbox_entries", GAUGE,
              "Audit/metrics entries waiting in the edge's outbox for the locator.",
              "outbox_depth"),
    MetricDef("edge_link_outbox_dropped_total", COUNTER,
              "Outbox entries dropped because the outbox was full (CT_OUTBOX_MAX on disk, or "
              "CT_OUTBOX_MEMORY_MAX held in memory while the disk could not be written).",
              "outbox_dropped_total"),
    MetricDef("edge_link_outbox_unwritten", GAUGE,
              "Outbox entries held in memory because the outbox file cannot be written "
              "(full disk); retried with back-off.", "outbox_unwritten"),
    MetricDef("edge_link_outbox_write_failures_total", COUNTER,
              "Failed attempts to write the outbox file.", "outbox_write_failures_total"),
)
