#!/usr/bin/env python3
"""Times schema v1's sequencing of 1,000 messages on MariaDB (local server, database test): INSERT of outgoing rows and DELETE of incoming rows in one transaction, READ COMMITTED, through the mysql client (client start included)."""
import subprocess, time
def my(sql):
    return subprocess.run(["mysql","-uroot","-h127.0.0.1","-N","test"],input=sql,capture_output=True,text=True,check=True).stdout
my("""DROP TABLE IF EXISTS exp_in, exp_out; CREATE TABLE exp_in (id BIGINT AUTO_INCREMENT PRIMARY KEY, partition_id BIGINT NOT NULL, message_id BINARY(16) NOT NULL, KEY pi (partition_id, id)) ENGINE=InnoDB;
CREATE TABLE exp_out (partition_id BIGINT NOT NULL, seq BIGINT NOT NULL, message_id BINARY(16) NOT NULL, PRIMARY KEY (partition_id, seq)) ENGINE=InnoDB;
INSERT INTO exp_in (partition_id, message_id) SELECT seq % 4, UNHEX(REPLACE(UUID(),'-','')) FROM seq_1_to_20000;""")
times=[]
for k in range(5):
    rows=[l.split('\t') for l in my("SELECT id, partition_id, HEX(message_id) FROM exp_in ORDER BY id LIMIT 1000").strip().splitlines()]
    vals=",".join(f"({p},{1000000*(k+1)+j},UNHEX('{h}'))" for j,(i,p,h) in enumerate(rows))
    ids=",".join(i for i,_,_ in rows)
    sql=f"SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION; INSERT INTO exp_out VALUES {vals}; DELETE FROM exp_in WHERE id IN ({ids}); COMMIT;"
    t=time.time(); my(sql); times.append((time.time()-t)*1000)
print("v1 (insert outgoing + delete incoming):", " / ".join(f"{x:.1f}" for x in times), "ms per 1,000 rows (includes client start)")
my("DROP TABLE IF EXISTS exp_in, exp_out")
