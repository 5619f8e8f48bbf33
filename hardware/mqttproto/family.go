package mqttproto

// typeSpec is the schema of one type of a message family: its name and the
// keys it has besides the family's common keys.
type typeSpec struct {
	name string
	spec spec
}

// family is the schema of a message with a "type" field (the events and
// commands of each kind): keys common to every type, and per type the
// keys it requires and allows.
type family struct {
	what   string          // message name for errors: "door event"
	names  []string        // type names, in order
	types  map[string]spec // type name to its full spec (common keys included)
	keys   []string        // every key of any type, common ones first, in encoding order
	common spec
}

// newFamily returns the family of message what with the given common keys
// and types. Type-specific keys are listed, and encoded, in the order they
// first appear in types.
func newFamily(what string, common spec, types ...typeSpec) *family {
	f := &family{what: what, types: map[string]spec{}, common: common}
	f.keys = append(append(f.keys, common.req...), common.opt...)
	for _, t := range types {
		f.names = append(f.names, t.name)
		f.types[t.name] = spec{
			req: append(append([]string(nil), common.req...), t.spec.req...),
			opt: append(append([]string(nil), common.opt...), t.spec.opt...),
		}
		for _, k := range append(append([]string(nil), t.spec.req...), t.spec.opt...) {
			if !containsString(f.keys, k) {
				f.keys = append(f.keys, k)
			}
		}
	}
	return f
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// begin parses payload b into d, reads its type and checks its keys
// against the type's schema. It returns the type name.
func (f *family) begin(d *decoder, b []byte) (string, error) {
	d.what = f.what
	if err := d.top(b); err != nil {
		return "", err
	}
	typ, err := d.typeOf(f.names)
	if err != nil {
		return "", err
	}
	if err := d.checkKeys(true, f.types[typ], f.keys, typ); err != nil {
		return "", err
	}
	return typ, nil
}

// checkSet checks a message of type typ whose fields are set as has
// reports: no field its type does not allow, and every required one. A
// field is set when it has a non-zero value (required booleans always
// count as set).
func (f *family) checkSet(typ string, has func(key string) bool) error {
	sp, ok := f.types[typ]
	if !ok {
		if typ == "" {
			return errorf(f.what, ErrMissingField, "field \"type\" is required")
		}
		return badValue(f.what, "type", "unknown type %q (want one of %s)", typ, joinNames(f.names))
	}
	for _, k := range f.keys {
		if k == "type" {
			continue
		}
		set := has(k)
		if set && !containsString(sp.req, k) && !containsString(sp.opt, k) {
			return errorf(f.what, ErrUnknownField, "field %q is not allowed in type %q", k, typ)
		}
		if !set && containsString(sp.req, k) {
			return errorf(f.what, ErrMissingField, "field %q is required in type %q", k, typ)
		}
	}
	return nil
}

// encode writes a message of type typ: "v", "type", then each set field in
// the family's key order, written by put.
func (f *family) encode(typ string, has func(key string) bool, put func(e *enc, key string)) ([]byte, error) {
	e := newEnc()
	e.open()
	e.uintField("v", Version)
	e.strField("type", typ)
	for _, k := range f.keys {
		if k != "type" && has(k) {
			put(&e, k)
		}
	}
	e.close()
	return finish(f.what, e.b)
}
