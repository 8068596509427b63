CREATE TABLE {membership_schools} (
    school_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    brin TEXT NOT NULL,
    school_group_id TEXT NOT NULL
);
CREATE TABLE {membership_groups} (
    group_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    archived BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX {membership_groups}_by_school ON {membership_groups} (school_id);
CREATE TABLE {membership_staff} (
    school_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (school_id, person_id)
);
CREATE INDEX {membership_staff}_by_person ON {membership_staff} (person_id);
CREATE TABLE {membership_group_staff} (
    group_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    PRIMARY KEY (group_id, person_id)
);
CREATE INDEX {membership_group_staff}_by_person ON {membership_group_staff} (person_id);
CREATE TABLE {membership_children} (
    child_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    first_name TEXT NOT NULL,
    last_initial TEXT NOT NULL
);
CREATE INDEX {membership_children}_by_group ON {membership_children} (group_id);
CREATE INDEX {membership_children}_by_school ON {membership_children} (school_id);
CREATE TABLE {membership_guardians} (
    child_id TEXT NOT NULL,
    guardian_id TEXT NOT NULL,
    invitation_id TEXT NOT NULL,
    linked_at BIGINT NOT NULL,
    PRIMARY KEY (child_id, guardian_id)
);
CREATE INDEX {membership_guardians}_by_guardian ON {membership_guardians} (guardian_id);
CREATE TABLE {membership_people} (
    person_id TEXT PRIMARY KEY,
    display_name TEXT,
    email TEXT
);
CREATE TABLE {membership_invitations} (
    invitation_id TEXT PRIMARY KEY,
    school_id TEXT NOT NULL,
    group_id TEXT NOT NULL,
    child_id TEXT NOT NULL,
    invitee_id TEXT NOT NULL,
    email TEXT NOT NULL,
    status TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    invited_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    corrected_from TEXT
);
CREATE INDEX {membership_invitations}_by_group ON {membership_invitations} (group_id, invited_at);
CREATE TABLE {membership_identities} (
    digest TEXT PRIMARY KEY,
    person_id TEXT NOT NULL,
    issuer TEXT NOT NULL
);
CREATE INDEX {membership_identities}_by_person ON {membership_identities} (person_id)
