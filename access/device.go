package access

import (
	"crypto/sha256"
	"crypto/subtle"
)

// DeviceKind is the kind of a site device. Its String form is the device's
// topic level in the MQTT protocol (hardware/mqttproto). The zero value is
// not a valid kind.
type DeviceKind uint8

// The kinds of device.
const (
	// DeviceReader is a card reader at one door.
	DeviceReader DeviceKind = iota + 1
	// DeviceDoor is a door controller (strike, sensor, request-to-exit).
	DeviceDoor
	// DeviceKiosk is a visitor check-in kiosk.
	DeviceKiosk
	// DeviceDispenser is a card dispenser/encoder.
	DeviceDispenser
)

var deviceKindNames = []string{DeviceReader: "reader", DeviceDoor: "door", DeviceKiosk: "kiosk", DeviceDispenser: "dispenser"}

// String returns "reader", "door", "kiosk" or "dispenser".
func (k DeviceKind) String() string { return enumName(deviceKindNames, int(k)) }

// MarshalText returns the String form of k.
func (k DeviceKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText parses the String form of a device kind into k, returning
// an Invalid error for any other text.
func (k *DeviceKind) UnmarshalText(b []byte) error {
	v, err := parseEnum("device kind", deviceKindNames, string(b))
	if err == nil {
		*k = DeviceKind(v)
	}
	return err
}

// SecretHashSize is the length of a device's stored secret hash.
const SecretHashSize = sha256.Size

// Device is a piece of site hardware known to the site: it authenticates
// to the site's broker with its ID and a secret, and may use only its own
// topics. Readers and door controllers serve one door.
//
// Device secrets are random tokens of at least 16 bytes made by the site
// when the device is commissioned, so they are stored as a plain SHA-256
// hash: a slow password hash protects guessable secrets, which these are not.
type Device struct {
	ID         ID
	SiteID     ID
	Kind       DeviceKind
	Name       string
	DoorID     ID     // the door a reader or door controller serves
	SecretHash []byte // SHA-256 of the device's secret
	Disabled   bool
}

// Validate reports the first problem with d as an Invalid error.
func (d Device) Validate() error {
	if err := requireID("device id", d.ID); err != nil {
		return err
	}
	what := "device " + string(d.ID)
	if err := requireID(what+": site id", d.SiteID); err != nil {
		return err
	}
	if d.Kind < DeviceReader || d.Kind > DeviceDispenser {
		return Errorf(Invalid, "%s: unknown kind %d", what, d.Kind)
	}
	if (d.Kind == DeviceReader || d.Kind == DeviceDoor) && d.DoorID.IsZero() {
		return Errorf(Invalid, "%s: a %s must name the door it serves", what, d.Kind)
	}
	if err := optionalID(what+": door id", d.DoorID); err != nil {
		return err
	}
	if len(d.SecretHash) != SecretHashSize {
		return Errorf(Invalid, "%s: secret hash must be %d bytes, have %d", what, SecretHashSize, len(d.SecretHash))
	}
	return nil
}

// HashSecret returns the stored form of a device secret.
func HashSecret(secret []byte) []byte {
	h := sha256.Sum256(secret)
	return h[:]
}

// Authenticate reports whether secret is d's secret and d is enabled. It
// takes the same time whatever the secret's contents.
func (d Device) Authenticate(secret []byte) bool {
	h := sha256.Sum256(secret)
	return !d.Disabled && len(d.SecretHash) == SecretHashSize && subtle.ConstantTimeCompare(h[:], d.SecretHash) == 1
}
