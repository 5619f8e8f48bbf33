package people

// SetCaptureWaiting makes s call f once each CaptureCard has taken what
// the hub holds as "before the call", so a test delivers its taps after.
func SetCaptureWaiting(s *Service, f func()) { captureWaiting.Store(s, f) }
