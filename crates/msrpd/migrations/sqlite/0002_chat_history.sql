-- Public messages of chat rooms, newest kept per room (chat.history_size), replayed to
-- joiners with their original sender and time. Private messages are never stored.
CREATE TABLE chat_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    room          TEXT NOT NULL,
    sender        TEXT NOT NULL,
    display       TEXT,
    datetime      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    body          BLOB NOT NULL
);
CREATE INDEX chat_history_room ON chat_history (room, id);
