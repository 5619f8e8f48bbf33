package visits

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/access"
	"github.com/gatehouse/gatehouse/cloud/hubstate"
	"github.com/gatehouse/gatehouse/replication"
)

// The guest-facing pages: plain HTML forms, no script, no cookies. The
// token in the path is the only credential: the guest's invitation token
// for pre-check-in, a token signed for the host for the pick-up link.
// GET never changes anything; a POST must come from the same origin
// (http.CrossOriginProtection) and carry the form token of the page it
// was served with (an HMAC of the path's token under a per-process key).

// Limits of the pre-check-in form.
const (
	// MaxDocumentBytes is the largest uploaded document.
	MaxDocumentBytes = 512 << 10
	// maxFormBytes bounds a whole pre-check-in request.
	maxFormBytes = 4 << 20
)

// documentTypes are the content types accepted for documents, as sniffed
// from their bytes (http.DetectContentType).
var documentTypes = []string{"application/pdf", "image/png", "image/jpeg"}

// GuestHandler returns the guest pages: GET and POST /guest/{token} (online
// pre-check-in), GET and POST /guest/{token}/pickup (the host's pick-up
// link), and GET /visits/token-keys (the public token keys as JSON, for
// sites; no credential needed).
func (s *Service) GuestHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /guest/{token}", s.checkinPage)
	mux.HandleFunc("POST /guest/{token}", s.checkinPost)
	mux.HandleFunc("GET /guest/{token}/pickup", s.pickupPage)
	mux.HandleFunc("POST /guest/{token}/pickup", s.pickupPost)
	mux.HandleFunc("GET /visits/token-keys", s.tokenKeys)
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.errorPage(w, http.StatusForbidden, "This form was sent from another site and was refused.")
	}))
	h := cop.Handler(mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; form-action 'self'; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer") // the path holds the token
		w.Header().Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// formToken is the hidden form field of a page served for token.
func (s *Service) formToken(purpose, token string) string {
	m := hmac.New(sha256.New, s.csrf)
	m.Write([]byte(purpose + "\x00" + token))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (s *Service) formTokenOK(r *http.Request, purpose, token string) bool {
	return hmac.Equal([]byte(r.PostFormValue("form_token")), []byte(s.formToken(purpose, token)))
}

// guestError is a refusal shown to a guest or host: an HTTP status and a
// sentence.
type guestError struct {
	status int
	msg    string
}

func (e *guestError) Error() string { return e.msg }

// tokenVisit verifies token and returns its visit, which must be for the
// guest (or, with forHost, the host) the token names and not final.
func (s *Service) tokenVisit(token string, forHost bool) (access.Visit, access.Person, error) {
	c, err := s.keys.Verify(token, s.now())
	switch {
	case errors.Is(err, access.ErrTokenExpired), errors.Is(err, access.ErrTokenKeyRetired):
		return access.Visit{}, access.Person{}, &guestError{http.StatusGone, "This link has expired."}
	case errors.Is(err, access.ErrTokenNotYetValid):
		return access.Visit{}, access.Person{}, &guestError{http.StatusForbidden, "This link is not valid yet."}
	case err != nil:
		return access.Visit{}, access.Person{}, &guestError{http.StatusBadRequest, "This link is not valid. Please use the link from your email exactly as it is."}
	}
	var (
		v      access.Visit
		ok     bool
		person access.Person
	)
	s.state.View(func(r *replication.Replica) {
		if v, ok = r.Visit(c.Visit); ok {
			person, _ = r.Person(v.VisitorID)
		}
	})
	want := v.VisitorID
	if forHost {
		want = v.HostID
	}
	switch {
	case !ok || v.SiteID != c.Site:
		return v, person, &guestError{http.StatusNotFound, "This visit is not known."}
	case c.Guest != want:
		return v, person, &guestError{http.StatusForbidden, "This link is not meant for this page."}
	case v.State.Final():
		return v, person, &guestError{http.StatusGone, "This visit is over (" + strings.ReplaceAll(v.State.String(), "_", " ") + "); the link no longer works."}
	}
	return v, person, nil
}

// checkinData is what the pre-check-in page shows.
type checkinData struct {
	Action, FormToken    string
	Site, Host, When     string
	Given, Family        string
	NDA                  bool
	Documents            []docField
	State                string
	Complete, Held       bool
	Saved                bool
	Problems             []string
	MaxKB                int
	CheckedIn, Escort    bool
	AcceptedTypes        string
	PreRegisteredMessage string
}

type docField struct {
	Field, Name string
	Have        bool
}

func (s *Service) names(v access.Visit) (site, host string, loc *time.Location) {
	var mc mailContext
	s.state.View(func(r *replication.Replica) { mc = s.mailContext(r, v.SiteID, v.HostID) })
	return mc.siteName, mc.hostName, mc.loc
}

// checkinData builds the page of visit v.
func (s *Service) checkinData(ctx context.Context, token string, v access.Visit, person access.Person) (checkinData, error) {
	var rec visitRecord
	if _, err := getJSON(ctx, s.st, KindVisitRecord, string(v.ID), &rec); err != nil {
		return checkinData{}, err
	}
	site, host, loc := s.names(v)
	d := checkinData{Action: "/guest/" + token, FormToken: s.formToken("checkin", token), Site: site, Host: host,
		When: v.From.In(loc).Format("Monday 2 January 2006, 15:04") + "–" + v.Until.In(loc).Format("15:04 MST"),
		NDA:  !rec.NDAAt.IsZero(), State: v.State.String(), Held: rec.Held, MaxKB: MaxDocumentBytes >> 10,
		Escort: v.Escort, CheckedIn: v.State >= access.VisitCheckedIn, Complete: v.State >= access.VisitPreRegistered,
		AcceptedTypes: strings.Join(documentTypes, ",")}
	d.Given, d.Family = access.SplitVisitorName(person.Name)
	if rec.Family != "" {
		d.Given, d.Family = rec.Given, rec.Family
	}
	if v.TypeID != "" {
		if vt, err := s.visitorType(ctx, v.TypeID); err == nil {
			for i, name := range vt.RequiredDocuments {
				have := slices.ContainsFunc(rec.Documents, func(r docRef) bool { return strings.EqualFold(r.Name, name) })
				d.Documents = append(d.Documents, docField{Field: "doc-" + strconv.Itoa(i), Name: name, Have: have})
			}
		}
	}
	return d, nil
}

func (s *Service) checkinPage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	v, person, err := s.tokenVisit(token, false)
	if err != nil {
		s.refuse(w, err)
		return
	}
	d, err := s.checkinData(r.Context(), token, v, person)
	if err != nil {
		s.refuse(w, err)
		return
	}
	d.Saved = r.URL.Query().Get("saved") == "1"
	s.render(w, http.StatusOK, checkinTmpl, d)
}

// upload is a document read from the form.
type upload struct {
	name, contentType string
	data              []byte
}

func (s *Service) checkinPost(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := r.PathValue("token")
	v, person, err := s.tokenVisit(token, false)
	if err != nil {
		s.refuse(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseMultipartForm(1 << 20); err != nil {
		s.errorPage(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("The form could not be read: documents may be at most %d KB each.", MaxDocumentBytes>>10))
		return
	}
	defer r.MultipartForm.RemoveAll()
	if !s.formTokenOK(r, "checkin", token) {
		s.errorPage(w, http.StatusForbidden, "This form has expired. Please open the link from your email again.")
		return
	}
	d, err := s.checkinData(ctx, token, v, person)
	if err != nil {
		s.refuse(w, err)
		return
	}
	switch {
	case d.Held || v.State == access.VisitRequested:
		s.errorPage(w, http.StatusConflict, "Your registration is being reviewed. Your host will contact you.")
		return
	case v.State >= access.VisitCheckedIn:
		s.errorPage(w, http.StatusConflict, "You have already checked in; nothing can be changed online any more.")
		return
	}
	// Read and check everything before changing anything.
	var problems []string
	given, family := strings.TrimSpace(r.PostFormValue("given")), strings.TrimSpace(r.PostFormValue("family"))
	if err := checkName(given, family); err != nil {
		problems = append(problems, "Name: "+err.Error()+".")
	}
	nda := r.PostFormValue("nda") == "accept"
	var uploads []upload
	for _, f := range d.Documents {
		fhs := r.MultipartForm.File[f.Field]
		if len(fhs) == 0 {
			continue
		}
		fh := fhs[0]
		if fh.Size == 0 {
			continue
		}
		if fh.Size > MaxDocumentBytes {
			problems = append(problems, fmt.Sprintf("%s: the file is larger than %d KB.", f.Name, MaxDocumentBytes>>10))
			continue
		}
		file, err := fh.Open()
		if err != nil {
			problems = append(problems, f.Name+": the file could not be read.")
			continue
		}
		data, err := io.ReadAll(io.LimitReader(file, MaxDocumentBytes+1))
		file.Close()
		ctype := http.DetectContentType(data)
		if i := strings.IndexByte(ctype, ';'); i >= 0 {
			ctype = ctype[:i]
		}
		switch {
		case err != nil || len(data) > MaxDocumentBytes:
			problems = append(problems, f.Name+": the file could not be read.")
		case !slices.Contains(documentTypes, ctype):
			problems = append(problems, fmt.Sprintf("%s: a %s file is not accepted; send a PDF, PNG or JPEG.", f.Name, ctype))
		default:
			uploads = append(uploads, upload{name: f.Name, contentType: ctype, data: data})
		}
	}
	if len(problems) > 0 {
		d.Problems = problems
		s.render(w, http.StatusUnprocessableEntity, checkinTmpl, d)
		return
	}
	held, err := s.precheckin(ctx, v.ID, given, family, nda, uploads)
	if err != nil {
		s.refuse(w, err)
		return
	}
	if held != "" {
		s.errorPage(w, http.StatusConflict, held)
		return
	}
	http.Redirect(w, r, "/guest/"+token+"?saved=1", http.StatusSeeOther)
}

// precheckin records a guest's pre-check-in in one hub write: the name
// (re-checked against the watchlist when it changed), the NDA, the
// documents, and the move to pre-registered once nothing is missing. It
// returns a message for the guest when the watchlist stopped it.
func (s *Service) precheckin(ctx context.Context, id access.ID, given, family string, nda bool, uploads []upload) (string, error) {
	now := s.now()
	var vt access.VisitorType
	var typeID access.ID
	s.state.View(func(r *replication.Replica) {
		if v, ok := r.Visit(id); ok {
			typeID = v.TypeID
		}
	})
	if typeID != "" {
		t, err := s.visitorType(ctx, typeID)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
		vt = t.domain()
	}
	watch, err := s.watchlist(ctx)
	if err != nil {
		return "", err
	}
	docIDs := make([]access.ID, len(uploads))
	for i := range uploads {
		if docIDs[i], err = s.newID(); err != nil {
			return "", err
		}
	}
	var held string
	_, err = s.update(ctx, id, func(tx *hubstate.Tx, v access.Visit, rec *visitRecord) (bool, error) {
		if v.State >= access.VisitCheckedIn || v.State < access.VisitInvited || rec.Held {
			return false, &guestError{http.StatusConflict, "Nothing can be changed online for this visit any more."}
		}
		person, _ := tx.Replica().Person(v.VisitorID)
		if name := access.VisitorName(given, family); name != person.Name {
			if hits := access.CheckWatchlist(watch, access.WatchSubject{GivenNames: given, Surname: family}); len(hits) > 0 {
				rec.HoldReason = strings.TrimSpace(rec.HoldReason + "; at pre-check-in as " + name + ": " + holdReason(hits))
				s.log.Warn("visits: watchlist hit at pre-check-in", "visit", id, "action", hits[0].Entry.Action.String())
				held = "Your registration is being reviewed. Your host will contact you."
				if hits[0].Entry.Action == access.WatchDeny {
					tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitDenied))
					held = "Your registration cannot be completed online. Please contact your host."
				} else {
					rec.Held = true
				}
				return true, nil
			}
			tx.Change(replication.KindPerson, string(v.VisitorID), replication.SetOp("name", name))
		}
		rec.Given, rec.Family = given, family
		if nda && rec.NDAAt.IsZero() {
			rec.NDAAt = now
		}
		for i, u := range uploads {
			head, _ := json.Marshal(map[string]any{"visit": id, "name": u.name, "content_type": u.contentType, "size": len(u.data)})
			data := append(append(head, '\n'), u.data...)
			tx.Put(storePut(KindDocument, string(docIDs[i]), data))
			rec.Documents = slices.DeleteFunc(rec.Documents, func(r docRef) bool { return strings.EqualFold(r.Name, u.name) })
			rec.Documents = append(rec.Documents, docRef{Name: u.name, ID: string(docIDs[i]), ContentType: u.contentType, Size: len(u.data), At: now})
		}
		var provided []string
		for _, d := range rec.Documents {
			provided = append(provided, d.Name)
		}
		if !rec.NDAAt.IsZero() && len(access.MissingDocuments(vt, provided)) == 0 && v.State < access.VisitPreRegistered {
			tx.Change(replication.KindVisit, string(id), replication.AdvanceOp(access.VisitPreRegistered))
			s.log.Info("visits: pre-registered", "visit", id)
		}
		return true, nil
	})
	return held, err
}

func (s *Service) pickupPage(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	v, person, err := s.tokenVisit(token, true)
	if err != nil {
		s.refuse(w, err)
		return
	}
	s.render(w, http.StatusOK, pickupTmpl, s.pickupData(token, v, person, ""))
}

type pickupData struct {
	Action, FormToken, Guest, Site, State, Message string
	CanConfirm, Done                               bool
}

func (s *Service) pickupData(token string, v access.Visit, person access.Person, msg string) pickupData {
	given, family := access.SplitVisitorName(person.Name)
	site, _, _ := s.names(v)
	return pickupData{Action: "/guest/" + token + "/pickup", FormToken: s.formToken("pickup", token),
		Guest: strings.TrimSpace(given + " " + family), Site: site, State: strings.ReplaceAll(v.State.String(), "_", " "),
		CanConfirm: v.State == access.VisitCheckedIn, Done: v.State == access.VisitPickedUp, Message: msg}
}

func (s *Service) pickupPost(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	v, person, err := s.tokenVisit(token, true)
	if err != nil {
		s.refuse(w, err)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil || !s.formTokenOK(r, "pickup", token) {
		s.errorPage(w, http.StatusForbidden, "This form has expired. Please open the link again.")
		return
	}
	view, err := s.ConfirmPickup(r.Context(), v.ID)
	if errors.Is(err, ErrState) {
		s.render(w, http.StatusConflict, pickupTmpl, s.pickupData(token, v, person, "Your guest has not checked in yet."))
		return
	}
	if err != nil {
		s.refuse(w, err)
		return
	}
	s.render(w, http.StatusOK, pickupTmpl, s.pickupData(token, view.Visit, person, "Pick-up confirmed."))
}

// tokenKeys serves the public token keys.
func (s *Service) tokenKeys(w http.ResponseWriter, _ *http.Request) {
	type key struct {
		ID      string `json:"key_id"`
		Public  string `json:"public_key"` // hex of the raw 32 bytes
		Created string `json:"created"`
		Retired string `json:"retired,omitempty"`
		Current bool   `json:"current"`
	}
	var out struct {
		Keys []key `json:"keys"`
	}
	for _, k := range s.keys.Public() {
		e := key{ID: k.ID.String(), Public: hex.EncodeToString(k.Public), Created: k.Created.Format(time.RFC3339), Current: k.Current}
		if !k.Retired.IsZero() {
			e.Retired = k.Retired.Format(time.RFC3339)
		}
		out.Keys = append(out.Keys, e)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "max-age=60")
	_ = json.NewEncoder(w).Encode(out)
}

// refuse shows err as an error page.
func (s *Service) refuse(w http.ResponseWriter, err error) {
	var ge *guestError
	switch {
	case errors.As(err, &ge):
		s.errorPage(w, ge.status, ge.msg)
	case errors.Is(err, ErrNotFound):
		s.errorPage(w, http.StatusNotFound, "This visit is not known.")
	case errors.Is(err, ErrState):
		s.errorPage(w, http.StatusConflict, "This visit cannot be changed any more.")
	default:
		s.log.Error("visits: guest page", "err", err)
		s.errorPage(w, http.StatusInternalServerError, "Something went wrong on our side. Please try again later.")
	}
}

func (s *Service) errorPage(w http.ResponseWriter, status int, msg string) {
	s.render(w, status, errorTmpl, msg)
}

func (s *Service) render(w http.ResponseWriter, status int, t *template.Template, data any) {
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		s.log.Error("visits: render guest page", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(b.Bytes())
}

const pageHead = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{block "title" .}}Your visit{{end}}</title><link rel="stylesheet" href="/style.css"></head><body><main>`

const pageFoot = `</main></body></html>
`

var checkinTmpl = template.Must(template.New("checkin").Parse(pageHead + `
<h1>Your visit to {{.Site}}</h1>
<p>{{.When}}, invited by {{.Host}}.</p>
{{if .Saved}}<p class="notice" id="saved">Saved.</p>{{end}}
{{if .Complete}}<p class="notice" id="complete">You are pre-registered. When you arrive, show the QR code of your invitation at the kiosk and have your identity document ready.{{if .Escort}} {{.Host}} will meet you at reception.{{end}}</p>{{end}}
{{if .Problems}}<ul class="problems" id="problems">{{range .Problems}}<li>{{.}}</li>{{end}}</ul>{{end}}
<form method="post" action="{{.Action}}" enctype="multipart/form-data">
<input type="hidden" name="form_token" value="{{.FormToken}}">
<fieldset><legend>Your name, exactly as on your identity document</legend>
<label>Given names <input name="given" value="{{.Given}}" maxlength="200" autocomplete="given-name"></label>
<label>Family name <input name="family" value="{{.Family}}" maxlength="200" required autocomplete="family-name"></label>
</fieldset>
<fieldset><legend>House rules and non-disclosure agreement</legend>
<p>While on site you follow the instructions of your host and of security, wear your visitor card visibly, and keep confidential what you learn about the occupiers and their business.</p>
<label><input type="checkbox" name="nda" value="accept"{{if .NDA}} checked{{end}}> I accept the house rules and the non-disclosure agreement.</label>
</fieldset>
{{if .Documents}}<fieldset><legend>Documents (PDF, PNG or JPEG, at most {{.MaxKB}} KB each)</legend>
{{range .Documents}}<label>{{.Name}}{{if .Have}} (received; send again to replace){{end}} <input type="file" name="{{.Field}}" accept="{{$.AcceptedTypes}}"></label>
{{end}}</fieldset>{{end}}
<p><button type="submit">Save</button></p>
</form>
` + pageFoot))

var pickupTmpl = template.Must(template.New("pickup").Parse(pageHead + `
<h1>Pick-up of {{.Guest}}</h1>
<p>Visit to {{.Site}}: {{.State}}.</p>
{{if .Message}}<p class="notice" id="message">{{.Message}}</p>{{end}}
{{if .CanConfirm}}<form method="post" action="{{.Action}}">
<input type="hidden" name="form_token" value="{{.FormToken}}">
<p>Confirm that you have met your guest: their card then opens the doors of the visit.</p>
<p><button type="submit">Confirm pick-up</button></p>
</form>{{else if .Done}}<p>The pick-up is confirmed.</p>{{else}}<p>Your guest has not checked in yet; open this link again once they have.</p>{{end}}
` + pageFoot))

var errorTmpl = template.Must(template.New("error").Parse(pageHead + `
<h1>Sorry</h1>
<p class="problems" id="error">{{.}}</p>
` + pageFoot))
