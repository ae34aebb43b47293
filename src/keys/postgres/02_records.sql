-- Version 2: records of the control plane (deployments, what is live per
-- environment), as JSON documents by kind and id.
CREATE TABLE records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    record TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (kind, id)
);
