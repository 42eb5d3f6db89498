#!/usr/bin/env python3
"""Times numbering 1,000 messages on MariaDB (local server, database test) with schema v2 variants: one UPDATE per 1,000 rows, READ COMMITTED, through the mysql client (client start included; run `SELECT 1` alone to subtract it)."""
import subprocess, time
def my(sql):
    return subprocess.run(["mysql","-uroot","-h127.0.0.1","-N","test"],input=sql,capture_output=True,text=True,check=True).stdout
def tree(pairs):
    if len(pairs) <= 8:
        return "CASE " + " ".join(f"WHEN id = {i} THEN {s}" for i,s in pairs) + " ELSE seq END"
    h=len(pairs)//2
    return f"CASE WHEN id < {pairs[h][0]} THEN {tree(pairs[:h])} ELSE {tree(pairs[h:])} END"
variants = {
 "v2 (seq NULL, (seq,id) + unique (partition_id,seq))": ("seq BIGINT NULL", ["KEY u (seq, id)", "UNIQUE KEY ps (partition_id, seq)"], "seq IS NULL"),
 "v2 without (seq,id)": ("seq BIGINT NULL", ["UNIQUE KEY ps (partition_id, seq)"], "seq IS NULL"),
 "seq NOT NULL DEFAULT 0, (seq,id), non-unique (partition_id,seq)": ("seq BIGINT NOT NULL DEFAULT 0", ["KEY u (seq, id)", "KEY ps (partition_id, seq)"], "seq = 0"),
 "seq NULL, no secondary index on seq": ("seq BIGINT NULL", ["KEY pi (partition_id, id)"], "seq IS NULL"),
}
for name,(col,idx,pred) in variants.items():
    my(f"""DROP TABLE IF EXISTS exp_m; CREATE TABLE exp_m (id BIGINT AUTO_INCREMENT PRIMARY KEY, partition_id BIGINT NOT NULL, {col}, message_id BINARY(16) NOT NULL, payload LONGBLOB NOT NULL, payload_type VARCHAR(128) NOT NULL, headers TEXT NOT NULL, created_at BIGINT NOT NULL, UNIQUE KEY mid (message_id), {', '.join(idx)}) ENGINE=InnoDB;
INSERT INTO exp_m (partition_id, message_id, payload, payload_type, headers, created_at) SELECT seq % 4, UNHEX(REPLACE(UUID(),'-','')), REPEAT('x',256), 't', '{{}}', 0 FROM seq_1_to_20000;""")
    times=[]
    for k in range(5):
        ids=[int(x) for x in my(f"SELECT id FROM exp_m WHERE {pred} ORDER BY id LIMIT 1000").split()]
        pairs=[(i, 1000000*(k+1)+j) for j,i in enumerate(ids)]
        sql=f"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION; UPDATE exp_m SET seq = {tree(pairs)} WHERE id IN ({','.join(map(str,ids))}) AND {pred}; COMMIT;"
        t=time.time(); my(sql); times.append((time.time()-t)*1000)
    print(f"{name}: {' / '.join(f'{x:.1f}' for x in times)} ms per 1,000 rows (includes client start)")
my("DROP TABLE IF EXISTS exp_m")
t=time.time(); my("SELECT 1"); print(f"client start alone: {(time.time()-t)*1000:.1f} ms")
