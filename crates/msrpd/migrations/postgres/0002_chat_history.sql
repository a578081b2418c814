-- Public messages of chat rooms, newest kept per room (chat.history_size), replayed to
-- joiners with their original sender and time. Private messages are never stored. Text
-- columns are unbounded: the sender writes DateTime and Content-Type.
CREATE TABLE msrpd_chat_history (
    id            BIGSERIAL PRIMARY KEY,
    room          TEXT NOT NULL,
    sender        TEXT NOT NULL,
    display       TEXT,
    datetime      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    body          BYTEA NOT NULL
);
CREATE INDEX msrpd_chat_history_room ON msrpd_chat_history (room, id);
