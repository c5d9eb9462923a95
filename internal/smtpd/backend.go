// Package smtpd is Postern's SMTP server for the MX role (port 25): it
// accepts mail for local users only, on emersion/go-smtp, and hands each
// message to the store in one durable commit before answering 250.
//
// Policy, as a receiving MX (RFC 5321):
//   - RCPT in a local domain must name a user or alias (550 5.1.1);
//     any other domain is refused (554 5.7.1 relay denied), since this
//     listener never authenticates.
//   - DATA must use CRLF line ends: a bare CR or LF anywhere is refused
//     (554 5.6.0), so no byte sequence other than <CRLF>.<CRLF> ends a
//     message and no bare line end reaches a mailbox.
//   - A NUL anywhere in the message is refused (554 5.6.0), as are CR, LF
//     or NUL inside a command line (501, in third_party/go-smtp).
//   - Several From: fields, or several addresses in one, are refused
//     (550 5.7.1; see checkFrom); a message without From: is accepted.
//   - A Received: header is added; Return-Path: and Delivered-To: are
//     added per recipient at delivery.
//   - With a Checker (SPF, DKIM, DMARC), an Authentication-Results: header
//     is added per recipient as well, and the Checker's verdict files the
//     message into INBOX or Junk, or refuses it at the end of data (550
//     5.7.x, or 451 4.7.x when a lookup failed). Incoming
//     Authentication-Results: fields naming our hostname are dropped.
package smtpd

import (
	"context"

	"github.com/postern-mail/postern/internal/store"
)

// Backend is what the SMTP server needs from storage.
type Backend interface {
	// HasDomain reports whether mail for domain is accepted here.
	HasDomain(ctx context.Context, domain string) (bool, error)
	// ResolveRecipient maps a local address to its users and the remote
	// addresses an alias forwards it to (store.ErrNotFound if none).
	ResolveRecipient(ctx context.Context, address string) (users []store.User, forward []string, err error)
	// ResolveLocal maps a local address to its users (store.ErrNotFound if none).
	ResolveLocal(ctx context.Context, address string) ([]store.User, error)
	// UserByAddress finds an account, for AUTH on submission.
	UserByAddress(ctx context.Context, address string) (store.User, error)
	// NewBlob starts a message's contents.
	NewBlob() (store.BlobWriter, error)
	// Deliver makes the message durable in every recipient's mailbox.
	Deliver(ctx context.Context, d *store.Delivery) error
}
