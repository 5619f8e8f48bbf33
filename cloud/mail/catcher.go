package mail

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"
)

// Catcher is a real SMTP server for the demo and tests: it accepts every
// message for any recipient, keeps the newest MaxCaught in memory, and
// shows them on a web page (Handler). It is not a relay: nothing leaves it.
type Catcher struct {
	srv *smtp.Server
	ln  net.Listener

	mu     sync.Mutex
	caught []Caught
	next   int
	wake   chan struct{} // closed and replaced when a message arrives
	served chan error
}

// MaxCaught is how many messages a Catcher keeps.
const MaxCaught = 500

// maxCaughtBytes bounds one message.
const maxCaughtBytes = 10 << 20

// Caught is a message the catcher received, parsed.
type Caught struct {
	N        int // 1, 2, …: order of arrival
	At       time.Time
	From     string
	To       []string
	Subject  string
	ID       string // Message-ID without brackets
	Text     string
	HTML     string
	Parts    []Part // inline images and attachments
	Received []byte // the raw message
}

// Part returns the part with content ID cid.
func (c Caught) Part(cid string) (Part, bool) {
	for _, p := range c.Parts {
		if p.ContentID == cid {
			return p, true
		}
	}
	return Part{}, false
}

// StartCatcher listens on addr (e.g. "127.0.0.1:0") and serves SMTP until
// Close.
func StartCatcher(addr string, log *slog.Logger) (*Catcher, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("mail catcher: listen %s: %w", addr, err)
	}
	c := &Catcher{ln: ln, wake: make(chan struct{}), served: make(chan error, 1)}
	s := smtp.NewServer(backend{c})
	s.Domain = "localhost"
	s.MaxMessageBytes = maxCaughtBytes
	s.MaxRecipients = 50
	s.ReadTimeout = 30 * time.Second
	s.WriteTimeout = 30 * time.Second
	s.AllowInsecureAuth = true
	s.ErrorLog = smtpLog{log}
	c.srv = s
	go func() { c.served <- s.Serve(ln) }()
	return c, nil
}

// Addr returns the SMTP listener's address.
func (c *Catcher) Addr() string { return c.ln.Addr().String() }

// Close stops the server.
func (c *Catcher) Close() error {
	// go-smtp's Close only closes the listeners Serve has registered, which
	// it may not have done yet: close ours too so Serve always returns.
	err := c.srv.Close()
	if lerr := c.ln.Close(); lerr != nil && !errors.Is(lerr, net.ErrClosed) {
		err = errors.Join(err, lerr)
	}
	if serr := <-c.served; serr != nil && !errors.Is(serr, smtp.ErrServerClosed) && !errors.Is(serr, net.ErrClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Messages returns the messages caught so far, oldest first.
func (c *Catcher) Messages() []Caught {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Caught(nil), c.caught...)
}

// Wait returns the first message caught (now or later) for which match
// holds, or ctx's error.
func (c *Catcher) Wait(ctx context.Context, match func(Caught) bool) (Caught, error) {
	for {
		c.mu.Lock()
		wake := c.wake
		for _, m := range c.caught {
			if match(m) {
				c.mu.Unlock()
				return m, nil
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return Caught{}, ctx.Err()
		case <-wake:
		}
	}
}

func (c *Catcher) add(m Caught) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	m.N = c.next
	c.caught = append(c.caught, m)
	if over := len(c.caught) - MaxCaught; over > 0 {
		c.caught = append(c.caught[:0:0], c.caught[over:]...)
	}
	close(c.wake)
	c.wake = make(chan struct{})
}

type backend struct{ c *Catcher }

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{c: b.c}, nil }

type session struct {
	c    *Catcher
	from string
	to   []string
}

func (s *session) Reset()                                      { s.from, s.to = "", nil }
func (s *session) Logout() error                               { return nil }
func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	raw, err := io.ReadAll(io.LimitReader(r, maxCaughtBytes+1))
	if err != nil {
		return err
	}
	if len(raw) > maxCaughtBytes {
		return &smtp.SMTPError{Code: 552, EnhancedCode: smtp.EnhancedCode{5, 3, 4}, Message: "message too big"}
	}
	m, err := parseMessage(raw)
	if err != nil {
		return &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 6, 0}, Message: "cannot parse message: " + err.Error()}
	}
	m.At, m.From, m.To, m.Received = time.Now(), s.from, s.to, raw
	s.c.add(m)
	return nil
}

// parseMessage reads the headers and walks the MIME tree for the text and
// HTML bodies and the other parts.
func parseMessage(raw []byte) (Caught, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return Caught{}, err
	}
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		subject = msg.Header.Get("Subject")
	}
	m := Caught{Subject: subject, ID: strings.Trim(msg.Header.Get("Message-Id"), "<> ")}
	err = walk(&m, msg.Header.Get("Content-Type"), msg.Header.Get("Content-Transfer-Encoding"), "", msg.Body, 0)
	return m, err
}

func walk(m *Caught, ctype, encoding, cid string, body io.Reader, depth int) error {
	if depth > 10 {
		return errors.New("MIME nesting too deep")
	}
	media, params, err := mime.ParseMediaType(ctype)
	if err != nil {
		media = "text/plain"
	}
	if strings.HasPrefix(media, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if err := walk(m, p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"),
				strings.Trim(p.Header.Get("Content-Id"), "<> "), p, depth+1); err != nil {
				return err
			}
		}
	}
	switch strings.ToLower(encoding) {
	case "base64":
		body = base64.NewDecoder(base64.StdEncoding, newlineStripper{body})
	case "quoted-printable":
		body = quotedprintable.NewReader(body)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return err
	}
	switch {
	case media == "text/plain" && m.Text == "" && cid == "":
		m.Text = string(data)
	case media == "text/html" && m.HTML == "" && cid == "":
		m.HTML = string(data)
	default:
		m.Parts = append(m.Parts, Part{Name: params["name"], ContentType: media, ContentID: cid, Data: data})
	}
	return nil
}

// newlineStripper drops CR and LF so base64 bodies split in lines decode.
type newlineStripper struct{ r io.Reader }

func (n newlineStripper) Read(p []byte) (int, error) {
	for {
		k, err := n.r.Read(p)
		j := 0
		for _, b := range p[:k] {
			if b != '\r' && b != '\n' {
				p[j] = b
				j++
			}
		}
		if j > 0 || err != nil {
			return j, err
		}
	}
}

type smtpLog struct{ log *slog.Logger }

func (l smtpLog) Printf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l smtpLog) Println(v ...any)               { l.log.Warn(fmt.Sprint(v...)) }

var listPage = template.Must(template.New("list").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Caught mail</title><link rel="stylesheet" href="/style.css"></head>
<body><header><h1>Caught mail</h1><span class="muted">{{len .}} messages; the demo's SMTP server keeps them in memory, nothing is sent</span></header>
<main><table><thead><tr><th>#</th><th>Time</th><th>To</th><th>Subject</th></tr></thead><tbody>
{{range .}}<tr><td>{{.N}}</td><td>{{.At.Format "15:04:05"}}</td><td>{{range .To}}{{.}} {{end}}</td><td><a href="/mail/{{.N}}">{{.Subject}}</a></td></tr>
{{else}}<tr><td colspan="4" class="muted">No mail yet.</td></tr>{{end}}
</tbody></table></main></body></html>
`))

var showPage = template.Must(template.New("show").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Subject}}</title><link rel="stylesheet" href="/style.css"></head>
<body><header><h1>{{.Subject}}</h1><a href="/mail">all mail</a></header>
<main><p>From {{.From}} to {{range .To}}{{.}} {{end}} at {{.At.Format "15:04:05"}}</p>
<pre>{{.Text}}</pre>
{{range $i, $p := .Parts}}{{if eq $p.ContentType "image/png"}}<p><img src="/mail/{{$.N}}/part/{{$i}}" alt="{{$p.Name}}"></p>{{end}}{{end}}
</main></body></html>
`))

// Handler serves the caught mail: /mail lists it, /mail/{n} shows one
// message (its text and images), /mail/{n}/part/{i} serves a part.
func (c *Catcher) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /mail", func(w http.ResponseWriter, _ *http.Request) {
		msgs := c.Messages()
		for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = listPage.Execute(w, msgs)
	})
	mux.HandleFunc("GET /mail/{n}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := c.find(r.PathValue("n"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = showPage.Execute(w, m)
	})
	mux.HandleFunc("GET /mail/{n}/part/{i}", func(w http.ResponseWriter, r *http.Request) {
		m, ok := c.find(r.PathValue("n"))
		i, err := strconv.Atoi(r.PathValue("i"))
		if !ok || err != nil || i < 0 || i >= len(m.Parts) {
			http.NotFound(w, r)
			return
		}
		p := m.Parts[i]
		w.Header().Set("Content-Type", p.ContentType)
		w.Header().Set("Content-Disposition", "inline")
		_, _ = w.Write(p.Data)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'")
		w.Header().Set("X-Frame-Options", "DENY")
		mux.ServeHTTP(w, r)
	})
}

func (c *Catcher) find(s string) (Caught, bool) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return Caught{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.caught {
		if m.N == n {
			return m, true
		}
	}
	return Caught{}, false
}
