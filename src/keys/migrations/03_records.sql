-- Version 3: records of the control plane (deployments, what is live per
-- environment), as JSON documents by kind and id.
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (kind, id)
);
