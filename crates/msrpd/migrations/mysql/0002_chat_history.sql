-- Public messages of chat rooms, newest kept per room (chat.history_size), replayed to
-- joiners with their original sender and time. Private messages are never stored.
CREATE TABLE msrpd_chat_history (
    id            BIGINT AUTO_INCREMENT PRIMARY KEY,
    room          VARCHAR(255) NOT NULL,
    sender        TEXT NOT NULL,
    display       TEXT,
    datetime      VARCHAR(64) NOT NULL,
    content_type  VARCHAR(255) NOT NULL,
    body          LONGBLOB NOT NULL,
    INDEX msrpd_chat_history_room (room, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
