package access

import "testing"

func TestVisitorName(t *testing.T) {
	for _, tc := range []struct{ given, family, name string }{
		{"Anna Maria", "van der Berg", "van der Berg, Anna Maria"},
		{" Jörg ", "Müller-Lüdenscheidt", "Müller-Lüdenscheidt, Jörg"},
		{"", "Madonna", "Madonna"},
	} {
		if got := VisitorName(tc.given, tc.family); got != tc.name {
			t.Errorf("VisitorName(%q, %q) = %q, want %q", tc.given, tc.family, got, tc.name)
		}
		g, f := SplitVisitorName(tc.name)
		if want := VisitorName(tc.given, tc.family); VisitorName(g, f) != want {
			t.Errorf("SplitVisitorName(%q) = %q, %q", tc.name, g, f)
		}
	}
	if g, f := SplitVisitorName("Anna Müller"); g != "Anna" || f != "Müller" {
		t.Errorf("SplitVisitorName without a comma = %q, %q", g, f)
	}
}
