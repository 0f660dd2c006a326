-- Koukan C++ router storage, PostgreSQL (spec/router.md §3, with the port's
-- improvements: chunked blobs, dequeue/GC indexes). Applied automatically
-- (idempotently, under an advisory lock) by the router on every open.
-- All times are unix seconds from the database clock (now()).

CREATE TABLE IF NOT EXISTS Sessions (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  creation BIGINT NOT NULL,
  live BOOLEAN NOT NULL,
  last_update BIGINT NOT NULL,
  uri TEXT NOT NULL,
  -- target of the lease foreign key: marking a session dead (live -> false)
  -- makes the database release every lease it held (ON UPDATE SET NULL).
  UNIQUE (id, live)
);
CREATE INDEX IF NOT EXISTS SessionsLiveUpdate ON Sessions (live, last_update);

CREATE TABLE IF NOT EXISTS Transactions (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  rest_id TEXT NOT NULL UNIQUE,
  json JSONB NOT NULL,
  input_done BOOLEAN NOT NULL DEFAULT FALSE,
  final_attempt_reason TEXT,
  creation_session_id BIGINT,
  inflight_session_id BIGINT,
  inflight_session_live BOOLEAN,
  creation BIGINT NOT NULL,
  last_update BIGINT NOT NULL,
  version BIGINT NOT NULL,
  next_attempt_time BIGINT,
  message_builder JSONB,
  notification BOOLEAN NOT NULL DEFAULT FALSE,
  no_final_notification BOOLEAN NOT NULL DEFAULT FALSE,
  FOREIGN KEY (inflight_session_id, inflight_session_live)
    REFERENCES Sessions (id, live) ON UPDATE SET NULL ON DELETE SET NULL
);
-- dequeue, branch A (retry): unleased, not final, ordered by due time
CREATE INDEX IF NOT EXISTS TxDequeue ON Transactions (next_attempt_time)
  WHERE inflight_session_id IS NULL AND final_attempt_reason IS NULL;
-- dequeue, branch B (late notification)
CREATE INDEX IF NOT EXISTS TxLateNotification ON Transactions (id)
  WHERE inflight_session_id IS NULL AND notification AND no_final_notification;
-- lease lookups (what a session holds); also serves the FK action
CREATE INDEX IF NOT EXISTS TxInflight ON Transactions (inflight_session_id, inflight_session_live)
  WHERE inflight_session_id IS NOT NULL;
-- GC
CREATE INDEX IF NOT EXISTS TxGc ON Transactions (last_update)
  WHERE inflight_session_id IS NULL;

CREATE TABLE IF NOT EXISTS Blob (
  id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  length BIGINT,                           -- declared total, NULL until known
  stored_length BIGINT NOT NULL DEFAULT 0,
  creation BIGINT NOT NULL,
  last_update BIGINT NOT NULL
);

-- Blob bytes, appended as rows (no whole-blob rewrite). chunk_offset is the
-- byte offset of data[0] in the blob; chunks are contiguous and disjoint.
CREATE TABLE IF NOT EXISTS BlobChunks (
  blob_id BIGINT NOT NULL REFERENCES Blob (id) ON DELETE CASCADE,
  chunk_offset BIGINT NOT NULL,
  data BYTEA NOT NULL,
  PRIMARY KEY (blob_id, chunk_offset)
);

-- Which blobs a tx uses; the number of rows per blob is its refcount.
CREATE TABLE IF NOT EXISTS TransactionBlobRefs (
  transaction_id BIGINT NOT NULL
    REFERENCES Transactions (id) ON UPDATE CASCADE ON DELETE CASCADE,
  tx_rest_id TEXT NOT NULL
    REFERENCES Transactions (rest_id) ON UPDATE CASCADE ON DELETE CASCADE,
  blob_id BIGINT NOT NULL REFERENCES Blob (id) ON UPDATE CASCADE,
  rest_id TEXT NOT NULL,                   -- the blob's name within the tx
  PRIMARY KEY (transaction_id, rest_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS RefsByTxRestId ON TransactionBlobRefs (tx_rest_id, rest_id);
CREATE INDEX IF NOT EXISTS RefsByBlob ON TransactionBlobRefs (blob_id);

CREATE TABLE IF NOT EXISTS TransactionAttempts (
  transaction_id BIGINT NOT NULL
    REFERENCES Transactions (id) ON UPDATE CASCADE ON DELETE CASCADE,
  attempt_id BIGINT NOT NULL,
  responses JSONB,
  creation BIGINT NOT NULL,
  last_update BIGINT NOT NULL,
  PRIMARY KEY (transaction_id, attempt_id)
);
