-- A download from nothing that spans many pages lands here in feed order, where every insert is an
-- append, and moves into `flags` in one pass sorted by blind index once it reaches the central's
-- head. Written page by page straight into the blind-index table, the same download wrote about
-- eight times the bytes: random B-tree inserts, each page's transaction rewriting most of the table
-- into the WAL. Rows are sealed and bound to their blind index exactly as in `flags`, so the move
-- copies them unchanged. A row whose `sealed` is NULL is a removal.
CREATE TABLE flags_staged (
    blind_index BLOB NOT NULL,
    sealed      BLOB,
    seq         INTEGER NOT NULL
);
