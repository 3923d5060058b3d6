package natslog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults for Options fields left zero.
const (
	DefaultStream        = "CDC_EVENTS"
	DefaultSubjectPrefix = "cdc"
	DefaultReplicas      = 1
	DefaultMaxMsgs       = 10_000_000
	DefaultMaxAge        = 168 * time.Hour
	// DefaultDuplicates is the stream's duplicate window: a message whose
	// id it stored within it is dropped (the second guard, after the
	// writer's own check of the stream's last event).
	DefaultDuplicates = 2 * time.Minute
)

// Options say where the stream is and what it looks like.
type Options struct {
	// URLs of the NATS servers.
	URLs []string
	// Stream is the JetStream stream's name. Default CDC_EVENTS.
	Stream string
	// SubjectPrefix: events go to <prefix>.<domain>.<action>. Default cdc.
	SubjectPrefix string
	// Replicas of the stream. Default 1.
	Replicas int
	// MaxMsgs and MaxAge bound the stream. Defaults 10,000,000 and 168h.
	MaxMsgs int64
	MaxAge  time.Duration
	// Create makes EnsureStream create a missing stream.
	Create bool
	// Credentials: a .creds file, or user and password, or a token.
	CredentialsFile string
	User, Password  string
	Token           string
	// TLS files; a CA alone verifies the servers, a cert and key also
	// authenticate this client.
	CAFile, CertFile, KeyFile string
	// Name is the connection's name, as NATS's monitoring shows it.
	Name string
	// Logger receives connection events. Default: discarded.
	Logger *slog.Logger
	// ObservePublish, when set, is told how long each event a Writer
	// published took to be acknowledged by the stream (a metrics hook).
	ObservePublish func(time.Duration)
}

// withDefaults returns o with its zero fields set.
func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.SubjectPrefix == "" {
		o.SubjectPrefix = DefaultSubjectPrefix
	}
	if o.Replicas <= 0 {
		o.Replicas = DefaultReplicas
	}
	if o.MaxMsgs <= 0 {
		o.MaxMsgs = DefaultMaxMsgs
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Connect connects to NATS with the options' credentials and TLS files,
// reconnecting for ever, and returns the connection and its JetStream
// context.
func Connect(ctx context.Context, o Options) (*nats.Conn, jetstream.JetStream, error) {
	o = o.withDefaults()
	if len(o.URLs) == 0 {
		return nil, nil, errors.New("natslog: no NATS server URL (log.nats.urls)")
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, nil, errors.New("natslog: log.nats.tls.cert_file and log.nats.tls.key_file go together: set both or neither")
	}
	log := o.Logger
	opts := []nats.Option{
		nats.Name(o.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(false),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("natslog: disconnected from NATS", "err", err)
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			// Asynchronous errors: a subscription that dropped messages
			// (a slow consumer), a permission refused.
			if sub != nil {
				log.Warn("natslog: NATS reported an error", "subject", sub.Subject, "err", err)
				return
			}
			log.Warn("natslog: NATS reported an error", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("natslog: reconnected to NATS", "server", nc.ConnectedUrlRedacted())
		}),
	}
	switch {
	case o.CredentialsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredentialsFile))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" || o.KeyFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	nc, err := nats.Connect(strings.Join(o.URLs, ","), opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("natslog: connect to %s: %w%s", strings.Join(o.URLs, ","), err, connectHint(err, o))
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(maxInFlight), jetstream.WithPublishAsyncTimeout(publishTimeout))
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("natslog: jetstream: %w", err)
	}
	return nc, js, nil
}

// connectHint says which config keys a failed connection points at: the
// credentials when the server refused them, the TLS files when TLS failed;
// "" when the error says nothing about either.
func connectHint(err error, o Options) string {
	var (
		unknownCA *x509.UnknownAuthorityError
		verify    *tls.CertificateVerificationError
		alert     tls.AlertError
	)
	switch {
	case errors.Is(err, nats.ErrAuthorization), errors.Is(err, nats.ErrAuthExpired),
		errors.Is(err, nats.ErrAuthRevoked), errors.Is(err, nats.ErrAccountAuthExpired):
		switch {
		case o.CredentialsFile != "":
			return " (the server refused the credentials of log.nats.credentials_file)"
		case o.User != "":
			return " (the server refused log.nats.user and log.nats.password; CDC_LOG_NATS_PASSWORD overrides the file's)"
		case o.Token != "":
			return " (the server refused log.nats.token; CDC_LOG_NATS_TOKEN overrides the file's)"
		default:
			return " (the server requires credentials and none is set: log.nats.credentials_file, log.nats.user and log.nats.password, or log.nats.token)"
		}
	case errors.Is(err, nats.ErrSecureConnWanted):
		return " (TLS is asked for, by log.nats.tls or a tls:// URL, but the server does not offer it)"
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		if o.CAFile == "" {
			return " (the server's TLS certificate is not signed by a CA this host trusts: set log.nats.tls.ca_file)"
		}
		return " (the server's TLS certificate does not verify against log.nats.tls.ca_file)"
	case errors.As(err, &alert), strings.Contains(err.Error(), "tls"):
		if o.CertFile == "" {
			return " (TLS failed: does the server require a client certificate? set log.nats.tls.cert_file and log.nats.tls.key_file)"
		}
		return " (TLS failed: does the server accept the certificate of log.nats.tls.cert_file? check log.nats.tls.ca_file, cert_file and key_file)"
	}
	return ""
}

// StreamConfig is the stream the options describe.
func StreamConfig(o Options) jetstream.StreamConfig {
	o = o.withDefaults()
	return jetstream.StreamConfig{
		Name:        o.Stream,
		Description: "cdc-broadcaster events, in commit order",
		Subjects:    []string{o.SubjectPrefix + ".>"},
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxMsgs:     o.MaxMsgs,
		MaxAge:      o.MaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    o.Replicas,
		Duplicates:  DefaultDuplicates,
	}
}

// EnsureStream returns the stream, creating it when it is missing and
// o.Create allows. An existing stream is left as it is.
func EnsureStream(ctx context.Context, js jetstream.JetStream, o Options) (jetstream.Stream, error) {
	o = o.withDefaults()
	s, err := js.Stream(ctx, o.Stream)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("natslog: look up stream %s: %w", o.Stream, err)
	}
	if !o.Create {
		return nil, fmt.Errorf("natslog: stream %s does not exist (source.create is false): run `cdc-broadcaster setup`", o.Stream)
	}
	s, err = js.CreateStream(ctx, StreamConfig(o))
	if err != nil {
		return nil, fmt.Errorf("natslog: create stream %s: %w", o.Stream, err)
	}
	o.Logger.Info("natslog: created stream", "stream", o.Stream, "subjects", o.SubjectPrefix+".>", "replicas", o.Replicas)
	return s, nil
}
