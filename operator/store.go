package operator

// Save writes the decisions held to their file, at once: they are few and
// rare, and one lost in a crash would put a CAS being patched back in
// service. Each write writes the decisions as they are when it begins,
// one write at a time, so the last one written is the newest.
func (d *Decisions) Save() {
	if d.opts.Path == "" || d.paused.Load() {
		return
	}
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	if err := Save(d.opts.Path, d.All()); err != nil {
		d.opts.Failures.Add(1)
		d.log.Error("operator decisions not saved: a restart would forget the last drain, maint or weight", "error", err)
	}
}

// Restore applies the decisions saved before a restart, but those about
// backends not known (the file no longer has them).
func (d *Decisions) Restore() {
	if d.opts.Path == "" {
		return
	}
	ds, err := Load(d.opts.Path)
	if err != nil {
		d.log.Warn("operator decisions ignored", "error", err)
		return
	}
	d.mu.Lock()
	kept := 0
	for _, dec := range ds {
		if _, err := d.backendLocked(dec.Pool, dec.Backend); err != nil {
			continue
		}
		d.takeLocked(dec)
		kept++
	}
	d.mu.Unlock()
	if kept > 0 {
		d.log.Info("operator decisions restored", "file", d.opts.Path, "backends", kept)
	}
}

// Pause stops writing the file, which the process taking over (a binary
// upgrade) writes from now on; Resume writes it again, when that process
// failed to start.
func (d *Decisions) Pause() { d.paused.Store(true) }

// Resume undoes Pause.
func (d *Decisions) Resume() { d.paused.Store(false) }
