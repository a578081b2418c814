-- Public messages of chat rooms, newest kept per room (chat.history_size), replayed to
-- joiners with their original sender and time. Private messages are never stored. Room
-- names compare byte for byte (a _ci collation would merge rooms); 700 characters fit
-- InnoDB's index; the texts the sender writes (DateTime, Content-Type) are unbounded.
CREATE TABLE msrpd_chat_history (
    id            BIGINT AUTO_INCREMENT PRIMARY KEY,
    room          VARCHAR(700) COLLATE utf8mb4_bin NOT NULL,
    sender        TEXT NOT NULL,
    display       TEXT,
    datetime      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    body          LONGBLOB NOT NULL,
    INDEX msrpd_chat_history_room (room, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
