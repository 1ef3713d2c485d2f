package loggen

import (
	"fmt"
	"strings"
	"time"
)

// Go services log with zap's production encoder; Node.js services print
// NestJS's text lines while starting, then log requests with pino.

// zapTS is zap's default epoch-seconds timestamp.
func zapTS(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func (g *generator) zap(t time.Time, level, caller, msg string) *jsonLine {
	return newJSON().str("level", level).float("ts", zapTS(t)).str("caller", caller).str("msg", msg)
}

func (g *generator) goStartup(t time.Time, out []logLine) []logLine {
	var j *jsonLine
	switch g.step {
	case 0:
		j = g.zap(t, "info", "cmd/main.go:52", "starting "+g.app.name).str("version", "0.4.0").str("go_version", "go1.21.4")
	case 1:
		j = g.zap(t, "info", "repository/mysql.go:48", "connecting to database").str("endpoint", g.app.name+"-mysql:3306").str("database", g.app.name)
	case 2:
		j = g.zap(t, "info", "repository/migrate.go:31", "migrations applied").int("count", 3).float("duration_ms", g.latency())
	case 3:
		j = g.zap(t, "info", "cmd/main.go:88", "listening").str("addr", ":8080")
	default:
		return out
	}
	return append(out, logLine{"stdout", j.String()})
}

func (g *generator) goEvent(k kind, t time.Time, out []logLine) []logLine {
	switch k {
	case kindStderr:
		var msg string
		switch g.rng.IntN(3) {
		case 0:
			msg = fmt.Sprintf("%s http: TLS handshake error from %s:%d: EOF", t.UTC().Format("2006/01/02 15:04:05"), g.podIP(), g.between(32768, 60999))
		case 1:
			msg = fmt.Sprintf("[mysql] %s packets.go:37: unexpected EOF", t.UTC().Format("2006/01/02 15:04:05"))
		default:
			msg = fmt.Sprintf("%s http: superfluous response.WriteHeader call from main.(*server).handle (server.go:118)", t.UTC().Format("2006/01/02 15:04:05"))
		}
		return append(out, logLine{"stderr", msg})
	case kindStackTrace:
		mod := "github.com/aws-containers/retail-store-sample-app/" + g.app.name
		stack := strings.Join([]string{
			mod + "/repository.(*mysqlRepository).List",
			"\t/app/repository/mysql.go:142",
			mod + "/api.(*CatalogAPI).GetProducts",
			"\t/app/api/handlers.go:61",
			"github.com/gin-gonic/gin.(*Context).Next",
			"\t/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/context.go:174",
			"github.com/gin-gonic/gin.(*Engine).handleHTTPRequest",
			"\t/go/pkg/mod/github.com/gin-gonic/gin@v1.9.1/gin.go:620",
			"net/http.serverHandler.ServeHTTP",
			"\t/usr/local/go/src/net/http/server.go:2938",
			"net/http.(*conn).serve",
			"\t/usr/local/go/src/net/http/server.go:2009",
		}, "\n")
		j := g.zap(t, "error", "repository/mysql.go:142", "query failed").
			str("error", fmt.Sprintf("dial tcp 10.100.%d.%d:3306: connect: connection refused", g.between(0, 255), g.between(1, 254))).
			str("stacktrace", stack)
		return append(out, logLine{"stdout", j.String()})
	case kindLong:
		j := g.zap(t, "debug", "api/handlers.go:77", "catalogue response").raw("body", g.longPayload("", ""))
		return append(out, logLine{"stdout", j.String()})
	}
	p := g.product()
	var j *jsonLine
	switch g.rng.IntN(5) {
	case 0:
		j = g.zap(t, "info", "api/handlers.go:88", "request").str("method", "GET").str("path", "/catalogue").
			int("status", int64(g.status())).float("latency_ms", g.latency()).int("size", int64(g.between(1, 20)))
	case 1:
		j = g.zap(t, "info", "api/handlers.go:88", "request").str("method", "GET").str("path", "/catalogue/product/"+p.id).
			int("status", int64(g.status())).float("latency_ms", g.latency()).str("product", p.name)
	case 2:
		j = g.zap(t, "info", "api/handlers.go:88", "request").str("method", "GET").str("path", "/catalogue/tags").
			int("status", 200).float("latency_ms", g.latency())
	case 3:
		j = g.zap(t, "warn", "repository/mysql.go:97", "slow query").
			str("query", "SELECT id, name, description, price FROM product WHERE tag = ? LIMIT ?").float("duration_ms", 300+g.latency()*10).str("tag", p.tags[0])
	default:
		j = g.zap(t, "info", "api/handlers.go:88", "request").str("method", "GET").str("path", "/health").
			int("status", 200).float("latency_ms", g.latency()/10).str("user_agent", "kube-probe/1.28+")
	}
	return append(out, logLine{"stdout", j.String()})
}

// Node.js: NestJS's logger and pino.

func nestLine(t time.Time, level, context, msg string) string {
	return fmt.Sprintf("[Nest] 1  - %s %7s [%s] %s", t.UTC().Format("01/02/2006, 3:04:05 PM"), level, context, msg)
}

func (g *generator) nodeStartup(t time.Time, out []logLine) []logLine {
	name := g.app.name
	ctrl := strings.ToUpper(name[:1]) + name[1:] + "Controller"
	var msg string
	switch g.step {
	case 0:
		msg = nestLine(t, "LOG", "NestFactory", "Starting Nest application...")
	case 1:
		msg = nestLine(t, "LOG", "InstanceLoader", fmt.Sprintf("AppModule dependencies initialized +%dms", g.between(8, 30)))
	case 2:
		msg = nestLine(t, "LOG", "InstanceLoader", "ConfigModule dependencies initialized +1ms")
	case 3:
		msg = nestLine(t, "LOG", "RoutesResolver", fmt.Sprintf("%s {/%s}: +%dms", ctrl, name, g.between(2, 9)))
	case 4:
		msg = nestLine(t, "LOG", "RouterExplorer", fmt.Sprintf("Mapped {/%s/:customerId, GET} route +2ms", name))
	case 5:
		msg = nestLine(t, "LOG", "RouterExplorer", fmt.Sprintf("Mapped {/%s/:customerId/update, POST} route +1ms", name))
	case 6:
		msg = nestLine(t, "LOG", "RouterExplorer", fmt.Sprintf("Mapped {/%s/:customerId/submit, POST} route +0ms", name))
	case 7:
		msg = nestLine(t, "LOG", "NestApplication", fmt.Sprintf("Nest application successfully started +%dms", g.between(1, 6)))
	default:
		return out
	}
	return append(out, logLine{"stdout", msg})
}

// pino returns pino's standard fields: level 10..60, time in epoch ms.
func (g *generator) pino(t time.Time, level int64) *jsonLine {
	return newJSON().int("level", level).int("time", t.UnixMilli()).int("pid", 1).str("hostname", g.pod.Name)
}

func (g *generator) nodeEvent(k kind, t time.Time, out []logLine) []logLine {
	name := g.app.name
	switch k {
	case kindStderr:
		if g.rng.IntN(2) == 0 {
			return append(out,
				logLine{"stderr", "(node:1) [DEP0040] DeprecationWarning: The `punycode` module is deprecated. Please use a userland alternative instead."},
				logLine{"stderr", "(Use `node --trace-deprecation ...` to show where the warning was created)"})
		}
		return append(out, logLine{"stderr", "(node:1) MaxListenersExceededWarning: Possible EventEmitter memory leak detected. 11 error listeners added to [Socket]. Use emitter.setMaxListeners() to increase limit"})
	case kindStackTrace:
		if g.rng.IntN(2) == 0 {
			addr := fmt.Sprintf("10.100.%d.%d:6379", g.between(0, 255), g.between(1, 254))
			return append(out,
				logLine{"stderr", nestLine(t, "ERROR", "ExceptionsHandler", "connect ECONNREFUSED "+addr)},
				logLine{"stderr", "Error: connect ECONNREFUSED " + addr},
				logLine{"stderr", "    at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16)"})
		}
		return append(out,
			logLine{"stderr", nestLine(t, "ERROR", "ExceptionsHandler", "Cannot read properties of undefined (reading 'items')")},
			logLine{"stderr", "TypeError: Cannot read properties of undefined (reading 'items')"},
			logLine{"stderr", fmt.Sprintf("    at %sService.update (/app/dist/%s/%s.service.js:41:38)", strings.ToUpper(name[:1])+name[1:], name, name)},
			logLine{"stderr", fmt.Sprintf("    at %sController.update (/app/dist/%s/%s.controller.js:29:37)", strings.ToUpper(name[:1])+name[1:], name, name)},
			logLine{"stderr", "    at /app/node_modules/@nestjs/core/router/router-execution-context.js:38:29"},
			logLine{"stderr", "    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"})
	case kindLong:
		j := g.pino(t, 20).raw("items", g.longPayload("", "")).str("msg", "cart state")
		return append(out, logLine{"stdout", j.String()})
	}
	customer := g.uuid()
	method, url := "GET", "/"+name+"/"+customer
	switch g.rng.IntN(3) {
	case 0:
		method, url = "POST", url+"/update"
	case 1:
		method, url = "POST", url+"/submit"
	}
	req := newJSON().int("id", int64(g.reqs)).str("method", method).str("url", url).
		str("remoteAddress", "::ffff:"+g.podIP()).int("remotePort", int64(g.between(32768, 60999)))
	res := newJSON().int("statusCode", int64(g.status()))
	j := g.pino(t, 30).raw("req", req.String()).raw("res", res.String()).
		int("responseTime", int64(g.between(1, 80))).str("msg", "request completed")
	if method == "POST" && g.rng.IntN(3) == 0 {
		p := g.product()
		j = g.pino(t, 30).str("customerId", customer).str("productName", p.name).int("quantity", int64(g.between(1, 4))).str("msg", "item added to checkout ✔")
	}
	return append(out, logLine{"stdout", j.String()})
}
