#!/usr/bin/env python3
"""The capacity model of docs/SCALING.md: measured inputs × assumptions → what each step needs.

Usage: scripts/capacity-model.py [inputs.json]   (prints JSON; without a file, the inputs of
SCALING.md's "Measured inputs" table). Change the numbers to your measurements and traffic.
"""
import json, math, sys

# Per-unit costs, from SCALING.md "Measured inputs" (µs of CPU, bytes, KiB).
MEASURED = {
    "c_m_us": 100,                 # server CPU per message, batched
    "c_d_us": 7.5,                 # server CPU per delivery
    "c_r_us": 100,                 # server CPU per event received from another node
    "c_idle_core_per_conn": 2e-5,  # cores per idle connection
    "rss_per_conn_kib": 20,
    "pg_cpu_us_per_msg": 35,
    "wal_bytes_per_msg": 850,
    "db_bytes_per_msg": 515,
    "redis_us_per_op": 80,         # redis-server process CPU per publish or receipt
    "envelope_bytes": 750,
}
M = json.load(open(sys.argv[1])) if len(sys.argv) > 1 else MEASURED
A = dict(
    peak_factor=3.0,            # peak msg/s over the day's average
    deliveries_per_message=20,  # online subscribers reached by a message (room-size mix below)
    typing_per_message=1.0,     # typing events per message, each to the same subscribers
    transitions_per_user_day=20,# presence online/offline transitions per user per day
    presence_recipients=20,     # online room-mates told about each transition
    node_cores=8, node_util=0.6, node_mem_gib=16, base_rss_mib=100,
    conn_per_node_max=100_000,  # a blast-radius choice, not a measured limit
    small_room_share=0.95,      # messages in rooms whose online members sit on ≤ 2 nodes
)
steps = [(10_000, 1_000_000), (100_000, 100_000_000), (1_000_000, 1_000_000_000)]
rows = []
for users, per_day in steps:
    avg = per_day / 86400
    peak = avg * A['peak_factor']
    msg_deliv = peak * A['deliveries_per_message']
    typing_deliv = msg_deliv * A['typing_per_message']
    presence_events = users * A['transitions_per_user_day'] / 86400 * A['peak_factor']
    presence_deliv = presence_events * A['presence_recipients']
    deliveries = msg_deliv + typing_deliv + presence_deliv
    cpu_core_s = (peak * M['c_m_us'] + deliveries * M['c_d_us']) / 1e6 + users * M['c_idle_core_per_conn']
    # nodes: first guess without the bus, then add each node's cross-node receipts
    nodes = 2
    for _ in range(10):
        spread_large = min(nodes, 20)
        receipts_per_event = A['small_room_share'] * min(nodes, 2) + (1 - A['small_room_share']) * spread_large
        events = peak + peak * A['typing_per_message'] + presence_events
        receipts = events * receipts_per_event
        cpu = cpu_core_s + receipts * M['c_r_us'] / 1e6
        need = max(2, math.ceil(cpu / (A['node_cores'] * A['node_util'])),
                   math.ceil(users / A['conn_per_node_max']))
        mem_gib = (users * M['rss_per_conn_kib'] / 1024 + need * A['base_rss_mib']) / 1024
        need = max(need, math.ceil(mem_gib / (A['node_mem_gib'] * 0.7)))
        if need == nodes:
            break
        nodes = need
    wal_mb_s = peak * M['wal_bytes_per_msg'] / 1e6
    db_gb_day = per_day * M['db_bytes_per_msg'] / 1e9
    pg_cores = peak * M['pg_cpu_us_per_msg'] / 1e6
    redis_cores = (events + receipts) * M['redis_us_per_op'] / 1e6
    bus_mb_s = receipts * M['envelope_bytes'] / 1e6
    rows.append(dict(users=users, per_day=per_day, avg=avg, peak=peak, deliveries=deliveries,
                     cpu=cpu, nodes=nodes, cores=nodes * A['node_cores'], mem_gib=mem_gib,
                     pg_cores=pg_cores, wal_mb_s=wal_mb_s, db_gb_day=db_gb_day,
                     db_tb_year=db_gb_day * 365 / 1000, events=events, receipts=receipts,
                     bus_mb_s=bus_mb_s, redis_cores=redis_cores,
                     idle_cores=users * M['c_idle_core_per_conn']))
print(json.dumps(dict(assumptions=A, rows=rows), indent=1))
