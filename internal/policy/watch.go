package policy

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watch runs the reload loop of a directory source.
func (e *Engine) watch(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		// The poll alone still applies changes within PollInterval.
		e.log.Warn("policy file watch unavailable; polling only", "error", err)
	} else {
		defer w.Close()
		e.addWatches(w)
	}

	poll := time.NewTicker(e.opts.PollInterval)
	defer poll.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()

	var events <-chan fsnotify.Event
	var werrs <-chan error
	if w != nil {
		events, werrs = w.Events, w.Errors
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if ev.Has(fsnotify.Create) {
				// A new directory, or a ConfigMap's new "..data" target.
				if fi, err := os.Stat(ev.Name); err == nil && fi.IsDir() {
					e.addWatches(w)
				}
			}
			debounce.Reset(e.opts.Debounce)
		case err, ok := <-werrs:
			if !ok {
				werrs = nil
				continue
			}
			e.log.Warn("policy file watch error", "error", err)
		case <-debounce.C:
			_ = e.reload(false) // logged and recorded by reload
		case <-poll.C:
			_ = e.reload(false)
			if w != nil {
				e.addWatches(w)
			}
		}
	}
}

// addWatches watches every directory below the policy directory, hidden
// ones included (a ConfigMap's "..data" swap is an event there). Adding a
// watch twice is harmless.
func (e *Engine) addWatches(w *fsnotify.Watcher) {
	root := filepath.Clean(e.opts.Dir)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			// Vanished while walking; the next poll sees the new tree.
			return nil
		}
		if d.IsDir() || (d.Type()&fs.ModeSymlink != 0 && isDir(p)) {
			if err := w.Add(p); err != nil {
				e.log.Debug("policy file watch add failed", "path", p, "error", err)
			}
		}
		return nil
	})
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}
