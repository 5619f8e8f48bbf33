// Package mail sends the hub's email over SMTP (invitations, arrival
// notices, pick-up links) and, for the demo and tests, runs a catcher: a
// real SMTP server on loopback that keeps what it receives and shows it on
// a web page.
package mail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"strconv"
	"time"

	gomail "github.com/wneessen/go-mail"
)

// Config says how the hub reaches its SMTP relay.
type Config struct {
	// Addr is the relay's host:port, e.g. "smtp.example.com:587".
	Addr string `json:"addr"`
	// From is the sender address, e.g. "Gatehouse <visits@example.com>".
	From string `json:"from"`
	// Username and Password authenticate to the relay (SMTP AUTH PLAIN)
	// when Username is set; the password comes from the environment.
	Username string `json:"username"`
	Password string `json:"-"`
	// TLS is "mandatory" (STARTTLS required, the default), "opportunistic"
	// (STARTTLS when offered) or "none" (plain SMTP, only for a relay on
	// loopback such as the demo's catcher).
	TLS string `json:"tls"`
	// Timeout bounds one delivery (30 s when zero).
	Timeout time.Duration `json:"-"`
}

// Validate reports the first problem with c.
func (c Config) Validate() error {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil || host == "" {
		return fmt.Errorf("mail config: addr %q is not host:port", c.Addr)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return fmt.Errorf("mail config: addr %q: bad port", c.Addr)
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("mail config: from %q: %v", c.From, err)
	}
	switch c.TLS {
	case "", "mandatory", "opportunistic", "none":
	default:
		return fmt.Errorf("mail config: tls %q is not mandatory, opportunistic or none", c.TLS)
	}
	return nil
}

// Message is one email. Text is required; HTML, when set, is the
// alternative the reader's mail program shows; Inline parts are images the
// HTML refers to as cid:{ContentID}.
type Message struct {
	To      string
	Subject string
	Text    string
	HTML    string
	Inline  []Part
	// ID is the Message-ID to set (without angle brackets); the sender
	// makes one when empty. Deliveries retried with the same ID let the
	// recipient's mail system drop duplicates.
	ID string
}

// Part is an inline or attached file.
type Part struct {
	Name        string
	ContentType string
	ContentID   string
	Data        []byte
}

// ErrBadMessage reports a message that cannot be sent as it is: retrying
// will not help.
var ErrBadMessage = errors.New("mail: bad message")

// Sender delivers messages through an SMTP relay.
type Sender struct {
	cfg  Config
	host string
	port int
}

// NewSender returns a sender for cfg.
func NewSender(cfg Config) (*Sender, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(cfg.Addr)
	p, _ := strconv.Atoi(port)
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Second
	}
	return &Sender{cfg: cfg, host: host, port: p}, nil
}

// Send delivers m, one SMTP exchange per call. An error wrapping
// ErrBadMessage means m itself is at fault; any other error is worth a
// retry later.
func (s *Sender) Send(ctx context.Context, m Message) error {
	msg, err := s.build(m)
	if err != nil {
		return err
	}
	policy := gomail.TLSMandatory
	switch s.cfg.TLS {
	case "opportunistic":
		policy = gomail.TLSOpportunistic
	case "none":
		policy = gomail.NoTLS
	}
	opts := []gomail.Option{gomail.WithPort(s.port), gomail.WithTLSPortPolicy(policy), gomail.WithTimeout(s.cfg.Timeout)}
	if s.cfg.Username != "" {
		opts = append(opts, gomail.WithSMTPAuth(gomail.SMTPAuthPlain), gomail.WithUsername(s.cfg.Username), gomail.WithPassword(s.cfg.Password))
	}
	c, err := gomail.NewClient(s.host, opts...)
	if err != nil {
		return fmt.Errorf("mail: client for %s: %w", s.cfg.Addr, err)
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("mail: send to %s via %s: %w", m.To, s.cfg.Addr, err)
	}
	return nil
}

func (s *Sender) build(m Message) (*gomail.Msg, error) {
	if m.Text == "" {
		return nil, fmt.Errorf("%w: no text", ErrBadMessage)
	}
	msg := gomail.NewMsg()
	if err := msg.From(s.cfg.From); err != nil {
		return nil, fmt.Errorf("%w: from: %v", ErrBadMessage, err)
	}
	if err := msg.To(m.To); err != nil {
		return nil, fmt.Errorf("%w: to %q: %v", ErrBadMessage, m.To, err)
	}
	msg.Subject(m.Subject)
	if m.ID != "" {
		msg.SetMessageIDWithValue(m.ID)
	} else {
		msg.SetMessageID()
	}
	msg.SetDate()
	msg.SetBodyString(gomail.TypeTextPlain, m.Text)
	if m.HTML != "" {
		msg.AddAlternativeString(gomail.TypeTextHTML, m.HTML)
	}
	for _, p := range m.Inline {
		if err := msg.EmbedReader(p.Name, bytes.NewReader(p.Data),
			gomail.WithFileContentID(p.ContentID), gomail.WithFileContentType(gomail.ContentType(p.ContentType))); err != nil {
			return nil, fmt.Errorf("%w: inline %s: %v", ErrBadMessage, p.Name, err)
		}
	}
	return msg, nil
}
