package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/authzd/authzd/gen/openapi"
	"github.com/authzd/authzd/internal/audit"
	"github.com/authzd/authzd/internal/config"
	"github.com/authzd/authzd/internal/decision"
	"github.com/authzd/authzd/internal/devidp"
	"github.com/authzd/authzd/internal/policy"
	"github.com/authzd/authzd/internal/rls"
	"github.com/authzd/authzd/internal/server"
	"github.com/authzd/authzd/internal/tlsconf"
	"github.com/authzd/authzd/internal/token"
	"github.com/authzd/authzd/internal/tracing"
	"github.com/authzd/authzd/policies"
)

func serveCmd(args []string, stderr, stdout io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfgFile   = fs.String("config", "", "configuration file (YAML)")
		dev       = fs.Bool("dev", false, "run on the embedded dev default: own issuer, loopback only, NOT FOR PRODUCTION")
		grpcAddr  = fs.String("grpc-addr", "", "gRPC listen address (overrides grpc_addr)")
		httpAddr  = fs.String("http-addr", "", "HTTP listen address (overrides http_addr)")
		policyDir = fs.String("policy-dir", "", "policy directory (overrides policy.dir)")
		devUsers  = fs.String("dev-users", "", "dev mode: YAML or JSON file of users the dev authorize endpoint approves")
		logLevel  = fs.String("log-level", "info", "log level: debug, info, warn or error")
	)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return usageError{fmt.Errorf("--log-level: %w", err)}
	}
	log := slog.New(slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: level}))

	var cfg *config.Config
	switch {
	case *dev && *cfgFile != "":
		return usageError{errors.New("--dev and --config exclude each other")}
	case *dev:
		cfg = config.Default()
		if err := cfg.ApplyEnv(os.Environ()); err != nil {
			return err
		}
	case *cfgFile != "":
		var err error
		if cfg, err = config.Load(*cfgFile, os.Environ()); err != nil {
			return err
		}
	default:
		return usageError{errors.New("either --config FILE or --dev is required")}
	}
	if *grpcAddr != "" {
		cfg.GRPCAddr = *grpcAddr
	}
	if *httpAddr != "" {
		cfg.HTTPAddr = *httpAddr
	}
	if *policyDir != "" {
		cfg.Policy.Dir = *policyDir
	}
	if *dev && (!config.IsLoopback(cfg.GRPCAddr) || !config.IsLoopback(cfg.HTTPAddr)) {
		return usageError{fmt.Errorf("dev mode binds to loopback only; %q and %q are not both loopback",
			cfg.GRPCAddr, cfg.HTTPAddr)}
	}

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("listen grpc_addr: %w", err)
	}
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		grpcLis.Close()
		return fmt.Errorf("listen http_addr: %w", err)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	shutdownTracing, err := tracing.Setup(ctx, "authzd", version)
	if err != nil {
		return fmt.Errorf("tracing from OTEL_* environment: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var dp *devidp.Provider
	if *dev {
		log.Warn("DEV MODE: authzd is running with its own in-memory issuer and token minting; " +
			"anyone who reaches it can become anyone. NOT FOR PRODUCTION.")
		dp, err = devidp.New(devidp.Options{
			BaseURL:   "http://" + httpLis.Addr().String(),
			UsersFile: *devUsers,
			Logger:    log.With("component", "devidp"),
		})
		if err != nil {
			return err
		}
		cfg.Issuers = []token.IssuerConfig{{
			Issuer:    dp.Issuer(),
			Audiences: []string{devidp.Audience},
		}}
	}

	engine, err := newEngine(cfg, *dev, log, reg)
	if err != nil {
		return err
	}
	verifier, err := token.NewVerifier(cfg.Issuers, token.Options{
		ClockSkew:  cfg.ClockSkew,
		Logger:     log.With("component", "token"),
		Registerer: reg,
	})
	if err != nil {
		return err
	}
	renderer, err := rls.NewRenderer(rls.Conf{
		Dialect:   cfg.Policy.Dialect,
		Databases: cfg.Policy.Databases,
		Tables:    cfg.Policy.Tables,
	})
	if err != nil {
		return fmt.Errorf("config %q: policy: %w", cfg.File(), err)
	}
	decider, err := decision.New(decision.Options{
		Verifier:      verifier,
		Evaluator:     engine,
		Renderer:      renderer,
		MaxTokenBytes: cfg.Limits.MaxTokenBytes,
		CacheSize:     cacheSize(*cfg.DecisionCache.Size),
		CacheTTL:      cfg.DecisionCache.TTL,
	})
	if err != nil {
		return err
	}
	dlog, closeLog, err := decisionLog(cfg.DecisionLog, stdout)
	if err != nil {
		return err
	}
	defer closeLog()

	opts := server.Options{
		Decider:         decider,
		Policy:          engine,
		Logger:          log,
		DecisionLog:     dlog,
		Registry:        reg,
		MaxBodyBytes:    cfg.Limits.MaxBodyBytes,
		OpenAPI:         openapi.JSON,
		ShutdownTimeout: cfg.ShutdownTimeout,
		Ready: func() error {
			if err := engine.Ready(); err != nil {
				return err
			}
			if !verifier.Ready() {
				var waiting []string
				for _, st := range verifier.Status() {
					if !st.Ready {
						waiting = append(waiting, st.Issuer)
					}
				}
				return fmt.Errorf("waiting for keys of %s", strings.Join(waiting, ", "))
			}
			return nil
		},
	}
	if dp != nil {
		opts.Dev = dp.Handler()
	}
	if cfg.TLS.Enabled() {
		tm, err := tlsconf.New(tlsconf.Options{
			CertFile:       cfg.TLS.CertFile,
			KeyFile:        cfg.TLS.KeyFile,
			ClientCAFile:   cfg.TLS.ClientCAFile,
			AllowedClients: cfg.TLS.AllowedClients,
			Logger:         log.With("component", "tls"),
			Registerer:     reg,
		})
		if err != nil {
			return fmt.Errorf("config %q: tls: %w", cfg.File(), err)
		}
		go tm.Run(ctx)
		opts.GRPCCreds = tm.GRPCCredentials()
		opts.HTTPTLS = tm.ServerTLS()
		opts.PeerCheck = tm.RequireAllowed
	}
	srv, err := server.New(opts)
	if err != nil {
		return err
	}

	verifier.Start(ctx)
	go engine.Watch(ctx)
	go reloadOnHUP(ctx, engine, log)

	if !*dev && !cfg.TLS.Enabled() {
		log.Warn("TLS is off: the service is reachable without transport security on its listeners",
			"grpc_addr", grpcLis.Addr().String(), "http_addr", httpLis.Addr().String())
	}
	log.Info("authzd serving", "version", version, "grpc_addr", grpcLis.Addr().String(),
		"http_addr", httpLis.Addr().String(), "policy_revision", engine.Info().Revision,
		"issuers", len(cfg.Issuers))
	if err := srv.Serve(ctx, grpcLis, httpLis); err != nil {
		return err
	}
	log.Info("authzd stopped")
	return nil
}

// newEngine loads the configured policy directory; in dev mode it falls
// back to the copy embedded in the binary when ./policies does not exist.
// With policy.bundle it returns an engine without a revision, which fetches
// the bundle once engine.Watch runs; engine.Ready says why it is not ready
// until then.
func newEngine(cfg *config.Config, dev bool, log *slog.Logger, reg prometheus.Registerer) (*policy.Engine, error) {
	opts := policy.Options{
		Package:     cfg.Policy.Package,
		Logger:      log,
		Registerer:  reg,
		EvalTimeout: cfg.Policy.EvalTimeout,
	}
	if cfg.Policy.ResultCacheSize != nil {
		opts.ResultCacheSize = cacheSize(*cfg.Policy.ResultCacheSize)
	}
	if cfg.Policy.Bundle != nil {
		opts.Bundle = cfg.Policy.Bundle
		e, err := policy.New(opts)
		if err != nil {
			return nil, fmt.Errorf("config %q: policy.bundle: %w", cfg.File(), err)
		}
		log.Info("loading policies from a bundle; policy.dir is ignored", "url", e.Info().Source)
		return e, nil
	}
	if st, err := os.Stat(cfg.Policy.Dir); err == nil && st.IsDir() {
		opts.Dir = cfg.Policy.Dir
		log.Info("loading policies from directory", "dir", cfg.Policy.Dir)
	} else if dev {
		opts.FS = embedded()
		log.Info("loading policies embedded in the binary, since the directory does not exist",
			"dir", cfg.Policy.Dir)
	} else {
		return nil, fmt.Errorf("config %q: policy.dir: %q is not a directory", cfg.File(), cfg.Policy.Dir)
	}
	return policy.New(opts)
}

func embedded() fs.FS { return policies.FS }

func reloadOnHUP(ctx context.Context, e *policy.Engine, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: reloading policy")
			if err := e.Reload(); err != nil {
				log.Error("policy reload refused", "error", err)
			}
		}
	}
}

// decisionLog opens the decision log that cfg names.
func decisionLog(cfg config.DecisionLog, stdout io.Writer) (*audit.Logger, func(), error) {
	opts := audit.Options{Claims: cfg.Claims, MaskClaims: cfg.MaskClaims}
	switch cfg.Output {
	case "stdout", "":
		return audit.New(stdout, opts), func() {}, nil
	case "stderr":
		return audit.New(os.Stderr, opts), func() {}, nil
	case "off":
		return audit.New(nil, opts), func() {}, nil
	default:
		f, err := os.OpenFile(cfg.Output, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("decision_log.output: %w", err)
		}
		return audit.New(f, opts), func() { f.Close() }, nil
	}
}

// cacheSize maps the configuration's size (0 turns the cache off) to the
// decision package's (negative turns it off).
func cacheSize(n int) int {
	if n == 0 {
		return -1
	}
	return n
}
