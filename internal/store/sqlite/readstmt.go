package sqlite

import (
	"context"
	"database/sql"
)

// rstmt returns the reader statement for q, prepared once: IMAP runs the
// same few queries for every command, and SQLite's parser and planner
// cost more than the queries themselves (database/sql re-prepares it
// lazily on each reader connection).
func (s *Store) rstmt(ctx context.Context, q string) (*sql.Stmt, error) {
	if st, ok := s.rstmts.Load(q); ok {
		return st.(*sql.Stmt), nil
	}
	st, err := s.rdb.PrepareContext(ctx, q)
	if err != nil {
		return nil, err
	}
	if prev, loaded := s.rstmts.LoadOrStore(q, st); loaded {
		st.Close()
		return prev.(*sql.Stmt), nil
	}
	return st, nil
}

// rquery runs a prepared reader query.
func (s *Store) rquery(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	st, err := s.rstmt(ctx, q)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

// rqueryRow runs a prepared reader query for one row.
func (s *Store) rqueryRow(ctx context.Context, q string, args ...any) *sql.Row {
	st, err := s.rstmt(ctx, q)
	if err != nil {
		return s.rdb.QueryRowContext(ctx, q, args...) // reports the same error
	}
	return st.QueryRowContext(ctx, args...)
}

func (s *Store) closeReadStmts() {
	s.rstmts.Range(func(k, v any) bool {
		v.(*sql.Stmt).Close()
		return true
	})
}
