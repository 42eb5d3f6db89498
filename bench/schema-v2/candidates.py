# Schema v2 candidates on PostgreSQL: WAL bytes and row writes per message, measured
# by plain SQL (no outbox code) in the shapes the workers would send.
# N messages, producers insert B rows per transaction, the sequencer numbers S rows
# per transaction, vacuum deletes V rows per transaction.
import subprocess, sys, time
N = int(sys.argv[1]) if len(sys.argv) > 1 else 50000
B, S, V, P = 100, 1000, 1000, 4
def psql(sql):
    r = subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qAtX", "-v", "ON_ERROR_STOP=1"],
                       input=sql, capture_output=True, text=True)
    if r.returncode: raise SystemExit(r.stderr)
    return r.stdout.strip()
def lsn(): return int(psql("SELECT pg_current_wal_lsn() - '0/0'"))
def writes(schema):
    return int(psql(f"SELECT coalesce(sum(n_tup_ins+n_tup_upd+n_tup_del),0) FROM pg_stat_user_tables WHERE schemaname='{schema}'") or 0)
CKPT = len(sys.argv) > 2 and sys.argv[2] == "ckpt"
def stage(name, schema, sql):
    if CKPT: psql("CHECKPOINT")
    w0, l0, t0 = writes(schema), lsn(), time.time()
    psql(sql)
    time.sleep(0.7)  # stats are flushed by the backend at most every 500 ms... after the session ends
    w1, l1 = writes(schema), lsn()
    return name, (l1 - l0) / N, (w1 - w0) / N, time.time() - t0
def producer_sql(table_inserts):
    # one transaction per B rows
    out = []
    for start in range(0, N, B):
        out.append("BEGIN;")
        out.append(table_inserts(start, min(B, N - start)))
        out.append("COMMIT;")
    return "\n".join(out)
payload = "decode(repeat('ab', 256), 'hex')"
def rows(start, n, fmt):
    return ",".join(fmt(i) for i in range(start, start + n))
results = []
# baseline
psql("DROP SCHEMA IF EXISTS v2x CASCADE; CREATE SCHEMA v2x;"
     "CREATE TABLE v2x.base (id bigserial PRIMARY KEY, partition_no int NOT NULL, message_id bytea NOT NULL, payload bytea NOT NULL, payload_type text NOT NULL, headers text NOT NULL, created_at bigint NOT NULL);")
results.append(stage("baseline insert", "v2x", producer_sql(lambda s, n: "INSERT INTO v2x.base (partition_no, message_id, payload, payload_type, headers, created_at) VALUES " +
    rows(s, n, lambda i: f"({i % P}, uuid_send(gen_random_uuid()), {payload}, 't', '{{}}', 0)") + ";")))
# v1
psql("DROP SCHEMA IF EXISTS v1x CASCADE; CREATE SCHEMA v1x;"
     "CREATE TABLE v1x.body (message_id bytea PRIMARY KEY, payload bytea NOT NULL, payload_type text NOT NULL, headers text NOT NULL, created_at bigint NOT NULL);"
     "CREATE TABLE v1x.incoming (id bigserial PRIMARY KEY, partition_id bigint NOT NULL, message_id bytea NOT NULL);"
     "CREATE INDEX ON v1x.incoming (partition_id, id);"
     "CREATE TABLE v1x.outgoing (partition_id bigint, seq bigint, message_id bytea NOT NULL, PRIMARY KEY (partition_id, seq));"
     "CREATE TABLE v1x.part (id bigint PRIMARY KEY, next_seq bigint NOT NULL, processed_seq bigint NOT NULL);"
     f"INSERT INTO v1x.part SELECT g, 1, 0 FROM generate_series(0, {P-1}) g;")
results.append(stage("v1 produce", "v1x", producer_sql(lambda s, n:
    "WITH b AS (INSERT INTO v1x.body (message_id, payload, payload_type, headers, created_at) VALUES " +
    rows(s, n, lambda i: f"(uuid_send(gen_random_uuid()), {payload}, 't', '{{}}', 0)") +
    " RETURNING message_id) INSERT INTO v1x.incoming (partition_id, message_id) SELECT (row_number() OVER ()) % " + str(P) + ", message_id FROM b;")))
seq_v1 = []
for _ in range(0, N, S):
    seq_v1.append(f"""BEGIN;
WITH picked AS (SELECT id, partition_id, message_id FROM v1x.incoming ORDER BY id LIMIT {S}),
 numbered AS (SELECT p.*, pt.next_seq + row_number() OVER (PARTITION BY p.partition_id ORDER BY p.id) - 1 AS seq FROM picked p JOIN v1x.part pt ON pt.id = p.partition_id),
 ins AS (INSERT INTO v1x.outgoing SELECT partition_id, seq, message_id FROM numbered),
 del AS (DELETE FROM v1x.incoming WHERE id IN (SELECT id FROM picked))
UPDATE v1x.part pt SET next_seq = m.mx + 1 FROM (SELECT partition_id, max(seq) mx FROM numbered GROUP BY partition_id) m WHERE pt.id = m.partition_id;
COMMIT;""")
results.append(stage("v1 sequence", "v1x", "\n".join(seq_v1)))
results.append(stage("v1 process (cursor per 100)", "v1x", "\n".join(
    f"UPDATE v1x.part SET processed_seq = processed_seq + 100 WHERE id = {k % P};" for k in range(N // 100))))
vac_v1 = []
for k in range(0, N // V):
    vac_v1.append(f"""BEGIN;
WITH d AS (DELETE FROM v1x.outgoing WHERE (partition_id, seq) IN (SELECT partition_id, seq FROM v1x.outgoing ORDER BY partition_id, seq LIMIT {V}) RETURNING message_id)
DELETE FROM v1x.body WHERE message_id IN (SELECT message_id FROM d);
COMMIT;""")
results.append(stage("v1 vacuum", "v1x", "\n".join(vac_v1)))
# v2a: one message table, seq set by the sequencer
def v2(schema, extra):
    psql(f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
     f"CREATE TABLE {schema}.message (id bigserial PRIMARY KEY, partition_id bigint NOT NULL, seq bigint, message_id bytea NOT NULL, payload bytea NOT NULL, payload_type text NOT NULL, headers text NOT NULL, created_at bigint NOT NULL) {extra};"
     f"CREATE INDEX ON {schema}.message (id) WHERE seq IS NULL;"
     f"CREATE UNIQUE INDEX ON {schema}.message (partition_id, seq) WHERE seq IS NOT NULL;"
     f"CREATE TABLE {schema}.part (id bigint PRIMARY KEY, next_seq bigint NOT NULL, processed_seq bigint NOT NULL);"
     f"INSERT INTO {schema}.part SELECT g, 1, 0 FROM generate_series(0, {P-1}) g;")
    res = [stage(f"{schema} produce", schema, producer_sql(lambda s, n: f"INSERT INTO {schema}.message (partition_id, message_id, payload, payload_type, headers, created_at) VALUES " +
        rows(s, n, lambda i: f"({i % P}, uuid_send(gen_random_uuid()), {payload}, 't', '{{}}', 0)") + ";"))]
    seq = []
    for _ in range(0, N, S):
        seq.append(f"""BEGIN;
WITH picked AS (SELECT id, partition_id FROM {schema}.message WHERE seq IS NULL ORDER BY id LIMIT {S}),
 numbered AS (SELECT p.*, pt.next_seq + row_number() OVER (PARTITION BY p.partition_id ORDER BY p.id) - 1 AS seq FROM picked p JOIN {schema}.part pt ON pt.id = p.partition_id),
 upd AS (UPDATE {schema}.message m SET seq = n.seq FROM numbered n WHERE m.id = n.id)
UPDATE {schema}.part pt SET next_seq = m.mx + 1 FROM (SELECT partition_id, max(seq) mx FROM numbered GROUP BY partition_id) m WHERE pt.id = m.partition_id;
COMMIT;""")
    res.append(stage(f"{schema} sequence", schema, "\n".join(seq)))
    res.append(stage(f"{schema} process (cursor per 100)", schema, "\n".join(
        f"UPDATE {schema}.part SET processed_seq = processed_seq + 100 WHERE id = {k % P};" for k in range(N // 100))))
    return res
results += v2("v2a", "")
results.append(stage("v2a vacuum (id ranges)", "v2a", "\n".join(
    f"DELETE FROM v2a.message WHERE id IN (SELECT id FROM v2a.message ORDER BY id LIMIT {V});" for _ in range(N // V))))
# v2h: seq in no index (HOT updates possible), fillfactor 50; the sequencer
# scans the primary key from a low-water id; the processor reads by (partition_id, id)
psql("DROP SCHEMA IF EXISTS v2h CASCADE; CREATE SCHEMA v2h;"
     "CREATE TABLE v2h.message (id bigserial PRIMARY KEY, partition_id bigint NOT NULL, seq bigint, message_id bytea NOT NULL, payload bytea NOT NULL, payload_type text NOT NULL, headers text NOT NULL, created_at bigint NOT NULL) WITH (fillfactor = 50);"
     "CREATE INDEX ON v2h.message (partition_id, id);"
     "CREATE TABLE v2h.part (id bigint PRIMARY KEY, next_seq bigint NOT NULL, processed_seq bigint NOT NULL);"
     f"INSERT INTO v2h.part SELECT g, 1, 0 FROM generate_series(0, {P-1}) g;")
results.append(stage("v2h produce", "v2h", producer_sql(lambda s, n: "INSERT INTO v2h.message (partition_id, message_id, payload, payload_type, headers, created_at) VALUES " +
    rows(s, n, lambda i: f"({i % P}, uuid_send(gen_random_uuid()), {payload}, 't', '{{}}', 0)") + ";")))
seq = []
for k in range(0, N, S):
    seq.append(f"""BEGIN;
WITH picked AS (SELECT id, partition_id FROM v2h.message WHERE id > {k} AND seq IS NULL ORDER BY id LIMIT {S}),
 numbered AS (SELECT p.*, pt.next_seq + row_number() OVER (PARTITION BY p.partition_id ORDER BY p.id) - 1 AS seq FROM picked p JOIN v2h.part pt ON pt.id = p.partition_id),
 upd AS (UPDATE v2h.message m SET seq = n.seq FROM numbered n WHERE m.id = n.id)
UPDATE v2h.part pt SET next_seq = m.mx + 1 FROM (SELECT partition_id, max(seq) mx FROM numbered GROUP BY partition_id) m WHERE pt.id = m.partition_id;
COMMIT;""")
results.append(stage("v2h sequence", "v2h", "\n".join(seq)))
results.append(stage("v2h vacuum (id ranges)", "v2h", "\n".join(
    f"DELETE FROM v2h.message WHERE id > {k} AND id <= {k + V};" for k in range(0, N, V))))
print("v2h HOT updates:", psql("SELECT n_tup_hot_upd, n_tup_upd FROM pg_stat_user_tables WHERE schemaname='v2h' AND relname='message'"))
# v2c: message inserted once, never updated; the sequencer inserts a narrow
# ordered row; both deleted by vacuum (4 row writes, 2 with truncation)
psql("DROP SCHEMA IF EXISTS v2c CASCADE; CREATE SCHEMA v2c;"
     "CREATE TABLE v2c.message (id bigserial PRIMARY KEY, partition_id bigint NOT NULL, message_id bytea NOT NULL, payload bytea NOT NULL, payload_type text NOT NULL, headers text NOT NULL, created_at bigint NOT NULL);"
     "CREATE TABLE v2c.ordered (partition_id bigint, seq bigint, message_row bigint NOT NULL, PRIMARY KEY (partition_id, seq));"
     "CREATE TABLE v2c.part (id bigint PRIMARY KEY, next_seq bigint NOT NULL, processed_seq bigint NOT NULL, sequenced_to bigint NOT NULL DEFAULT 0);"
     f"INSERT INTO v2c.part SELECT g, 1, 0 FROM generate_series(0, {P-1}) g;")
results.append(stage("v2c produce", "v2c", producer_sql(lambda s, n: "INSERT INTO v2c.message (partition_id, message_id, payload, payload_type, headers, created_at) VALUES " +
    rows(s, n, lambda i: f"({i % P}, uuid_send(gen_random_uuid()), {payload}, 't', '{{}}', 0)") + ";")))
seq = []
for k in range(0, N, S):
    seq.append(f"""BEGIN;
WITH picked AS (SELECT id, partition_id FROM v2c.message WHERE id > {k} ORDER BY id LIMIT {S}),
 numbered AS (SELECT p.*, pt.next_seq + row_number() OVER (PARTITION BY p.partition_id ORDER BY p.id) - 1 AS seq FROM picked p JOIN v2c.part pt ON pt.id = p.partition_id),
 ins AS (INSERT INTO v2c.ordered SELECT partition_id, seq, id FROM numbered)
UPDATE v2c.part pt SET next_seq = m.mx + 1 FROM (SELECT partition_id, max(seq) mx FROM numbered GROUP BY partition_id) m WHERE pt.id = m.partition_id;
COMMIT;""")
results.append(stage("v2c sequence", "v2c", "\n".join(seq)))
results.append(stage("v2c vacuum (ranges, both)", "v2c", "\n".join(
    f"BEGIN; DELETE FROM v2c.ordered WHERE message_row > {k} AND message_row <= {k + V}; DELETE FROM v2c.message WHERE id > {k} AND id <= {k + V}; COMMIT;" for k in range(0, N, V))))
# v2p: v2a range-partitioned by id, consumed partitions truncated
psql("DROP SCHEMA IF EXISTS v2p CASCADE; CREATE SCHEMA v2p;"
     "CREATE TABLE v2p.message (id bigint NOT NULL, partition_id bigint NOT NULL, seq bigint, message_id bytea NOT NULL, payload bytea NOT NULL, payload_type text NOT NULL, headers text NOT NULL, created_at bigint NOT NULL, PRIMARY KEY (id)) PARTITION BY RANGE (id);"
     "CREATE SEQUENCE v2p.ids;"
     f"DO $$ BEGIN FOR k IN 0..{N // 10000} LOOP EXECUTE format('CREATE TABLE v2p.m%s PARTITION OF v2p.message FOR VALUES FROM (%s) TO (%s)', k, k*10000, (k+1)*10000); END LOOP; END $$;"
     "CREATE INDEX ON v2p.message (id) WHERE seq IS NULL;"
     "CREATE INDEX ON v2p.message (partition_id, seq) WHERE seq IS NOT NULL;"
     "CREATE TABLE v2p.part (id bigint PRIMARY KEY, next_seq bigint NOT NULL, processed_seq bigint NOT NULL);"
     f"INSERT INTO v2p.part SELECT g, 1, 0 FROM generate_series(0, {P-1}) g;")
results.append(stage("v2p produce", "v2p", producer_sql(lambda s, n: "INSERT INTO v2p.message (id, partition_id, message_id, payload, payload_type, headers, created_at) VALUES " +
    rows(s, n, lambda i: f"(nextval('v2p.ids'), {i % P}, uuid_send(gen_random_uuid()), {payload}, 't', '{{}}', 0)") + ";")))
seq = []
for k in range(0, N, S):
    seq.append(f"""BEGIN;
WITH picked AS (SELECT id, partition_id FROM v2p.message WHERE seq IS NULL ORDER BY id LIMIT {S}),
 numbered AS (SELECT p.*, pt.next_seq + row_number() OVER (PARTITION BY p.partition_id ORDER BY p.id) - 1 AS seq FROM picked p JOIN v2p.part pt ON pt.id = p.partition_id),
 upd AS (UPDATE v2p.message m SET seq = n.seq FROM numbered n WHERE m.id = n.id)
UPDATE v2p.part pt SET next_seq = m.mx + 1 FROM (SELECT partition_id, max(seq) mx FROM numbered GROUP BY partition_id) m WHERE pt.id = m.partition_id;
COMMIT;""")
results.append(stage("v2p sequence", "v2p", "\n".join(seq)))
results.append(stage("v2p vacuum (truncate)", "v2p", "\n".join(
    f"TRUNCATE v2p.m{k};" for k in range(0, N // 10000 + 1))))
for name, wal, w, t in results:
    print(f"{name:34s} WAL/msg {wal:8.1f}  row writes/msg {w:6.3f}  {t:6.1f}s")
