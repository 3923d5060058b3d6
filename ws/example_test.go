package ws_test

import (
	"context"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"time"

	"github.com/treasure-home/cdc-broadcaster/acl"
	"github.com/treasure-home/cdc-broadcaster/config"
	"github.com/treasure-home/cdc-broadcaster/eventlog"
	"github.com/treasure-home/cdc-broadcaster/ws"
)

// The gateway is wired to the event log, the token verifier and the access
// rules; Run follows the log, Handler serves the clients, and Shutdown
// closes them with 1001 within the drain timeout.
func ExampleNewServer() {
	var (
		cfg      config.Config // loaded by config.Load
		verifier *acl.Verifier // from acl.NewVerifier(ctx, cfg.Auth.JWT, ...)
		rules    *acl.Rules    // from acl.NewRules(cfg.Channels, cfg.Auth, pool, ...)
	)
	events := eventlog.NewMemory(eventlog.Options{MaxEvents: cfg.Retention.MaxEvents, MaxAge: cfg.Retention.MaxAge})
	srv, err := ws.NewServer(ws.Options{
		Server:   cfg.Server,
		Limits:   cfg.Limits,
		Log:      events,
		Verifier: verifier,
		Access:   rules,
		Audit:    os.Stdout,
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	go func() {
		if err := srv.Run(ctx); err != nil {
			log.Print(err)
		}
	}()
	hs := &http.Server{Addr: cfg.Server.Listen, Handler: srv.Handler()}
	go func() {
		if err := hs.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}()

	<-ctx.Done()
	drain, cancel := context.WithTimeout(context.Background(), max(cfg.Server.DrainTimeout, time.Second))
	defer cancel()
	if err := srv.Shutdown(drain); err != nil {
		log.Print(err)
	}
	_ = hs.Shutdown(drain)
}
