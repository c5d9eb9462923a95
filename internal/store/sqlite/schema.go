package sqlite

// schema is the version-1 index. Addresses and domains are stored in lower case.
// The mailboxes.subscribed column is unused since the subscriptions table
// exists; it is kept so that older data directories open unchanged.
const schema = `
CREATE TABLE IF NOT EXISTS meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS domains (
	name    TEXT PRIMARY KEY,
	created INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
	id       INTEGER PRIMARY KEY,
	address  TEXT NOT NULL UNIQUE,
	domain   TEXT NOT NULL REFERENCES domains(name),
	password TEXT NOT NULL,
	created  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS users_domain ON users(domain);
CREATE TABLE IF NOT EXISTS aliases (
	address TEXT NOT NULL,
	target  TEXT NOT NULL,
	domain  TEXT NOT NULL REFERENCES domains(name),
	PRIMARY KEY (address, target)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS aliases_domain ON aliases(domain);
CREATE INDEX IF NOT EXISTS aliases_target ON aliases(target);
CREATE TABLE IF NOT EXISTS mailboxes (
	id             INTEGER PRIMARY KEY,
	user_id        INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name           TEXT NOT NULL,
	special_use    TEXT NOT NULL DEFAULT '',
	subscribed     INTEGER NOT NULL DEFAULT 1,
	uidvalidity    INTEGER NOT NULL,
	uidnext        INTEGER NOT NULL DEFAULT 1,
	highest_modseq INTEGER NOT NULL DEFAULT 1,
	messages       INTEGER NOT NULL DEFAULT 0,
	unseen         INTEGER NOT NULL DEFAULT 0,
	size           INTEGER NOT NULL DEFAULT 0,
	UNIQUE (user_id, name)
);
CREATE TABLE IF NOT EXISTS messages (
	id           INTEGER PRIMARY KEY,
	qid          TEXT NOT NULL UNIQUE,
	size         INTEGER NOT NULL,
	received     INTEGER NOT NULL,
	mail_from    TEXT NOT NULL,
	header_msgid TEXT NOT NULL DEFAULT '',
	inline       INTEGER NOT NULL DEFAULT 0,
	refs         INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS contents (
	message_id INTEGER PRIMARY KEY REFERENCES messages(id) ON DELETE CASCADE,
	data       BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_header_msgid ON messages(header_msgid);
CREATE TABLE IF NOT EXISTS entries (
	mailbox_id    INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid           INTEGER NOT NULL,
	message_id    INTEGER NOT NULL REFERENCES messages(id),
	flags         INTEGER NOT NULL DEFAULT 0,
	modseq        INTEGER NOT NULL,
	internal_date INTEGER NOT NULL,
	prefix        BLOB NOT NULL,
	size          INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_message ON entries(message_id);
-- Entries and expunges by MODSEQ: what changed since a MODSEQ (entrycache.go).
CREATE INDEX IF NOT EXISTS entries_modseq ON entries(mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS keywords (
	mailbox_id INTEGER NOT NULL,
	uid        INTEGER NOT NULL,
	keyword    TEXT NOT NULL,
	PRIMARY KEY (mailbox_id, uid, keyword)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expunged (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	uid        INTEGER NOT NULL,
	modseq     INTEGER NOT NULL,
	PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS expunged_modseq ON expunged(mailbox_id, modseq);
CREATE TABLE IF NOT EXISTS events (
	id     INTEGER PRIMARY KEY,
	qid    TEXT NOT NULL,
	time   INTEGER NOT NULL,
	kind   TEXT NOT NULL,
	detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_qid ON events(qid);
CREATE TABLE IF NOT EXISTS subscriptions (
	user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
	name    TEXT NOT NULL,
	PRIMARY KEY (user_id, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox_keywords (
	mailbox_id INTEGER NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	keyword    TEXT NOT NULL,
	PRIMARY KEY (mailbox_id, keyword)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_orphans ON messages(refs) WHERE refs <= 0;
-- Subscriptions used to be a mailboxes column; the table keeps names of
-- deleted mailboxes too (RFC 9051 6.3.7). Copy them over once.
INSERT OR IGNORE INTO subscriptions(user_id, name)
	SELECT user_id, name FROM mailboxes
	WHERE subscribed = 1 AND NOT EXISTS (SELECT 1 FROM meta WHERE key = 'subscriptions_table');
INSERT OR IGNORE INTO meta(key, value) VALUES ('subscriptions_table', '1');
INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '1');
`
