package loggen

import (
	"fmt"
	"strings"
	"time"
)

// Spring Boot 3.2's default console layout, without colours:
// %d{yyyy-MM-dd'T'HH:mm:ss.SSSXXX} %5p ${PID} --- [%15.15t] %-40.40logger{39} : %m%n
const springTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// springBanner is Spring Boot's default banner, printed after an empty line.
var springBanner = []string{
	"",
	`  .   ____          _            __ _ _`,
	` /\\ / ___'_ __ _ _(_)_ __  __ _ \ \ \ \`,
	`( ( )\___ | '_ | '_| | '_ \/ _` + "`" + ` | \ \ \ \`,
	` \\/  ___)| |_)| | | | | || (_| |  ) ) ) )`,
	`  '  |____| .__|_| |_|_| |_\__, | / / / /`,
	` =========|_|==============|___/=/_/_/_/`,
	` :: Spring Boot ::                (v3.2.0)`,
	"",
}

// springLine formats one line in Spring Boot's console layout.
func springLine(t time.Time, level, thread, logger, msg string) string {
	var b strings.Builder
	b.Grow(80 + len(msg))
	b.WriteString(t.UTC().Format(springTimeLayout))
	fmt.Fprintf(&b, " %5s 1 --- [%15s] %-40s : ", level, keepRight(thread, 15), keepRight(logger, 40))
	b.WriteString(msg)
	return b.String()
}

// otelTime formats t as the OpenTelemetry Java agent's simple logger does:
// yyyy-MM-dd HH:mm:ss:SSS Z.
func otelTime(t time.Time) string {
	t = t.UTC()
	return fmt.Sprintf("%s:%03d +0000", t.Format(time.DateTime), t.Nanosecond()/1e6)
}

// keepRight truncates s to its last n bytes, as logback's %.n does.
func keepRight(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}

func (g *generator) springMain() string { return g.app.abbrev + "." + g.app.class }

func (g *generator) httpThread() string {
	return fmt.Sprintf("http-nio-8080-exec-%d", g.between(1, 10))
}

// springStartup appends start-up step g.step, or nothing once done: the
// JVM's and the OpenTelemetry agent's stderr lines, the banner, Spring
// Boot's and Tomcat's start-up lines, the DispatcherServlet initialised by
// the first request.
func (g *generator) springStartup(t time.Time, out []logLine) []logLine {
	main := g.springMain()
	info := func(thread, logger, msg string) []logLine {
		return append(out, logLine{"stdout", springLine(t, "INFO", thread, logger, msg)})
	}
	switch g.step {
	case 0:
		return append(out, logLine{"stderr", "Picked up JAVA_TOOL_OPTIONS: -javaagent:/opt/aws-opentelemetry-agent.jar -XX:MaxRAMPercentage=75.0"})
	case 1:
		return append(out, logLine{"stderr", fmt.Sprintf(
			"[otel.javaagent %s] [main] INFO io.opentelemetry.javaagent.tooling.VersionLogger - opentelemetry-javaagent - version: 1.32.0-aws",
			otelTime(t))})
	case 2:
		for _, l := range springBanner {
			out = append(out, logLine{"stdout", l})
		}
		return out
	case 3:
		return info("main", main, fmt.Sprintf("Starting %s v0.4.0 using Java 17.0.9 with PID 1 (/app/app.jar started by appuser in /app)", g.app.class))
	case 4:
		return info("main", main, `No active profile set, falling back to 1 default profile: "default"`)
	case 5:
		return info("main", "o.s.b.w.embedded.tomcat.TomcatWebServer", "Tomcat initialized with port 8080 (http)")
	case 6:
		return info("main", "o.apache.catalina.core.StandardService", "Starting service [Tomcat]")
	case 7:
		return info("main", "o.apache.catalina.core.StandardEngine", "Starting Servlet engine: [Apache Tomcat/10.1.16]")
	case 8:
		return info("main", "o.a.c.c.C.[Tomcat].[localhost].[/]", "Initializing Spring embedded WebApplicationContext")
	case 9:
		return info("main", "w.s.c.ServletWebServerApplicationContext", fmt.Sprintf("Root WebApplicationContext: initialization completed in %d ms", g.between(900, 2400)))
	case 10:
		return info("main", "o.s.b.a.e.web.EndpointLinksResolver", "Exposing 4 endpoint(s) beneath base path '/actuator'")
	case 11:
		return info("main", "o.s.b.w.embedded.tomcat.TomcatWebServer", "Tomcat started on port 8080 (http) with context path ''")
	case 12:
		ms := g.between(4000, 9000)
		return info("main", main, fmt.Sprintf("Started %s in %d.%03d seconds (process running for %d.%03d)",
			g.app.class, ms/1000, ms%1000, (ms+1624)/1000, (ms+1624)%1000))
	case 13:
		return info("http-nio-8080-exec-1", "o.a.c.c.C.[Tomcat].[localhost].[/]", "Initializing Spring DispatcherServlet 'dispatcherServlet'")
	case 14:
		return info("http-nio-8080-exec-1", "o.s.web.servlet.DispatcherServlet", "Initializing Servlet 'dispatcherServlet'")
	case 15:
		return info("http-nio-8080-exec-1", "o.s.web.servlet.DispatcherServlet", "Completed initialization in 1 ms")
	}
	return out
}

func (g *generator) springEvent(k kind, t time.Time, out []logLine) []logLine {
	switch k {
	case kindStderr:
		return append(out, logLine{"stderr", g.javaStderr(t)})
	case kindStackTrace:
		return g.javaStackTrace(t, out)
	case kindLong:
		msg := g.longPayload("Writing [", "]")
		return append(out, logLine{"stdout", springLine(t, "DEBUG", g.httpThread(), "o.s.w.s.m.m.a.HttpEntityMethodProcessor", msg)})
	}
	level, logger, msg := g.springRequest()
	return append(out, logLine{"stdout", springLine(t, level, g.httpThread(), logger, msg)})
}

// springRequest returns a request-handling log line of the app.
func (g *generator) springRequest() (level, logger, msg string) {
	a := g.app.abbrev
	p := g.product()
	customer := g.uuid()
	switch g.app.name {
	case "ui":
		switch g.rng.IntN(6) {
		case 0:
			return "INFO", a + ".web.CatalogController", fmt.Sprintf("GET /catalog?tag=%s&page=%d -> %d products in %d ms", p.tags[0], g.between(1, 4), g.between(1, 12), g.between(2, 90))
		case 1:
			return "INFO", a + ".web.CatalogController", fmt.Sprintf("GET /catalog/%s -> product '%s'", p.id, p.name)
		case 2:
			return "INFO", a + ".web.CartController", fmt.Sprintf("Added product '%s' (%s) to cart of customer %s", p.name, p.id, customer)
		case 3:
			n := g.between(1, 5)
			return "INFO", a + ".web.CheckoutController", fmt.Sprintf("Checkout submitted for customer %s: %d items, total %s", customer, n, money(n*p.price))
		case 4:
			return "WARN", a + ".s.c.CatalogClient", fmt.Sprintf("Slow response from http://catalog.catalog.svc:80/catalogue: %d ms", g.between(800, 4000))
		default:
			return "INFO", a + ".web.HomeController", fmt.Sprintf("GET / -> 200 (%d recommended products, session %s)", g.between(3, 8), g.uuid()[:8])
		}
	case "carts":
		switch g.rng.IntN(4) {
		case 0:
			return "INFO", a + ".controllers.CartsController", fmt.Sprintf("GET /carts/%s -> %d items", customer, g.between(0, 9))
		case 1:
			return "INFO", a + ".controllers.ItemsController", fmt.Sprintf("POST /carts/%s/items: added '%s' x%d", customer, p.name, g.between(1, 3))
		case 2:
			return "INFO", a + ".r.DynamoDBCartRepository", fmt.Sprintf("Saved cart %s in %d ms", customer, g.between(3, 60))
		default:
			return "WARN", a + ".r.DynamoDBCartRepository", fmt.Sprintf("Retrying PutItem after ProvisionedThroughputExceededException (attempt %d of 3)", g.between(1, 3))
		}
	case "orders":
		switch g.rng.IntN(4) {
		case 0:
			n := g.between(1, 5)
			return "INFO", a + ".web.OrderController", fmt.Sprintf("Created order %s for customer %s: %d items, total %s", g.uuid(), customer, n, money(n*p.price))
		case 1:
			return "INFO", a + ".messaging.OrdersEventHandler", fmt.Sprintf("Published OrderCreatedEvent %s to exchange 'orders'", g.uuid())
		case 2:
			return "INFO", a + ".web.OrderController", fmt.Sprintf("GET /orders -> %d orders", g.between(0, 40))
		default:
			return "WARN", "com.zaxxer.hikari.pool.HikariPool", fmt.Sprintf("HikariPool-1 - Thread starvation or clock leap detected (housekeeper delta=%dm%ds).", g.between(1, 3), g.between(0, 59))
		}
	}
	return "INFO", a + ".web.ApiController", fmt.Sprintf("GET /api/%s/%s -> %d in %d ms", g.app.name, p.id, g.status(), g.between(1, 120))
}

// javaStderr returns a line a JVM writes to stderr outside of logback.
func (g *generator) javaStderr(t time.Time) string {
	switch g.rng.IntN(3) {
	case 0:
		return fmt.Sprintf("[otel.javaagent %s] [OkHttp http://adot-collector.opentelemetry:4318/...] WARN io.opentelemetry.exporter.internal.http.HttpExporter - Failed to export spans. Server responded with HTTP status code 503. Error message: Unable to parse response body, HTTP status message: Service Unavailable",
			otelTime(t))
	case 1:
		return "WARNING: A terminally deprecated method in java.lang.System has been called"
	default:
		return fmt.Sprintf("OpenJDK 64-Bit Server VM warning: CodeCache is full. Compiler has been disabled. (used %d KB)", g.between(200000, 245760))
	}
}

// Frames of a request thread, innermost first after the application frames.
var springFrames = []string{
	"java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103) ~[na:na]",
	"java.base/java.lang.reflect.Method.invoke(Method.java:580) ~[na:na]",
	"org.springframework.web.method.support.InvocableHandlerMethod.doInvoke(InvocableHandlerMethod.java:254) ~[spring-web-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.method.support.InvocableHandlerMethod.invokeForRequest(InvocableHandlerMethod.java:182) ~[spring-web-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.mvc.method.annotation.ServletInvocableHandlerMethod.invokeAndHandle(ServletInvocableHandlerMethod.java:118) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.invokeHandlerMethod(RequestMappingHandlerAdapter.java:917) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.mvc.method.annotation.RequestMappingHandlerAdapter.handleInternal(RequestMappingHandlerAdapter.java:829) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.mvc.method.AbstractHandlerMethodAdapter.handle(AbstractHandlerMethodAdapter.java:87) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.DispatcherServlet.doDispatch(DispatcherServlet.java:1089) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.DispatcherServlet.doService(DispatcherServlet.java:979) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.FrameworkServlet.processRequest(FrameworkServlet.java:1014) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.servlet.FrameworkServlet.doGet(FrameworkServlet.java:903) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"jakarta.servlet.http.HttpServlet.service(HttpServlet.java:564) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:885) ~[spring-webmvc-6.1.1.jar!/:6.1.1]",
	"jakarta.servlet.http.HttpServlet.service(HttpServlet.java:658) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:205) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:149) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.tomcat.websocket.server.WsFilter.doFilter(WsFilter.java:51) ~[tomcat-embed-websocket-10.1.16.jar!/:na]",
	"org.apache.catalina.core.ApplicationFilterChain.internalDoFilter(ApplicationFilterChain.java:174) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.core.ApplicationFilterChain.doFilter(ApplicationFilterChain.java:149) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.springframework.web.filter.RequestContextFilter.doFilterInternal(RequestContextFilter.java:100) ~[spring-web-6.1.1.jar!/:6.1.1]",
	"org.springframework.web.filter.OncePerRequestFilter.doFilter(OncePerRequestFilter.java:116) ~[spring-web-6.1.1.jar!/:6.1.1]",
	"org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:167) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.core.StandardContextValve.invoke(StandardContextValve.java:90) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.core.StandardHostValve.invoke(StandardHostValve.java:115) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.valves.ErrorReportValve.invoke(ErrorReportValve.java:93) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.core.StandardEngineValve.invoke(StandardEngineValve.java:74) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.catalina.connector.CoyoteAdapter.service(CoyoteAdapter.java:341) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.coyote.http11.Http11Processor.service(Http11Processor.java:391) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.coyote.AbstractProcessorLight.process(AbstractProcessorLight.java:63) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.coyote.AbstractProtocol$ConnectionHandler.process(AbstractProtocol.java:896) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.tomcat.util.net.NioEndpoint$SocketProcessor.doRun(NioEndpoint.java:1744) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.tomcat.util.net.SocketProcessorBase.run(SocketProcessorBase.java:52) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.tomcat.util.threads.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1191) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.tomcat.util.threads.ThreadPoolExecutor$Worker.run(ThreadPoolExecutor.java:659) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"org.apache.tomcat.util.threads.TaskThread$WrappingRunnable.run(TaskThread.java:61) ~[tomcat-embed-core-10.1.16.jar!/:na]",
	"java.base/java.lang.Thread.run(Thread.java:840) ~[na:na]",
}

// javaStackTrace appends an exception as a JVM writes it: one line for the
// exception, one per frame ("\tat ..."), "Caused by:" sections with their
// "\t... n common frames omitted" line. Mostly logged by logback on stdout
// after an ERROR line; sometimes printed by printStackTrace on stderr.
func (g *generator) javaStackTrace(t time.Time, out []logLine) []logLine {
	pkg, class := g.app.pkg, g.app.class
	base := strings.TrimSuffix(class, "Application")
	customer := g.uuid()
	type exc struct{ head, cause string }
	var e exc
	switch g.rng.IntN(3) {
	case 0:
		e = exc{head: fmt.Sprintf("java.lang.IllegalStateException: %s not found for customer %s", base, customer)}
	case 1:
		e = exc{head: `java.lang.NullPointerException: Cannot invoke "String.length()" because "name" is null`}
	default:
		e = exc{
			head:  `org.springframework.web.client.ResourceAccessException: I/O error on GET request for "http://catalog.catalog.svc:80/catalogue": Connection refused`,
			cause: "java.net.ConnectException: Connection refused",
		}
	}
	appFrames := []string{
		fmt.Sprintf("%s.services.%sService.get(%sService.java:%d) ~[!/:0.4.0]", pkg, base, base, g.between(40, 120)),
		fmt.Sprintf("%s.web.%sController.handle(%sController.java:%d) ~[!/:0.4.0]", pkg, base, base, g.between(30, 90)),
	}
	// Some of the filter chain, then the thread's bottom frames.
	last := len(springFrames) - 3
	frames := append(appFrames, springFrames[:g.between(12, last)]...)
	frames = append(frames, springFrames[last:]...)

	stream := "stdout"
	stripJar := false
	if g.rng.IntN(4) == 0 {
		stream, stripJar = "stderr", true
	} else {
		thread := g.httpThread()
		out = append(out, logLine{stream, springLine(t, "ERROR", thread, "o.a.c.c.C.[.[.[/].[dispatcherServlet]",
			fmt.Sprintf("Servlet.service() for servlet [dispatcherServlet] in context with path [] threw exception [Request processing failed: %s] with root cause", e.head))})
	}
	frame := func(f string) string {
		if stripJar {
			if i := strings.LastIndex(f, " ~["); i >= 0 {
				f = f[:i]
			}
		}
		return "\tat " + f
	}
	out = append(out, logLine{stream, e.head})
	for _, f := range frames {
		out = append(out, logLine{stream, frame(f)})
	}
	if e.cause != "" {
		out = append(out, logLine{stream, "Caused by: " + e.cause})
		for _, f := range []string{
			"java.base/sun.nio.ch.Net.pollConnect(Native Method) ~[na:na]",
			"java.base/sun.nio.ch.Net.pollConnectNow(Net.java:672) ~[na:na]",
			"java.base/sun.nio.ch.NioSocketImpl.timedFinishConnect(NioSocketImpl.java:547) ~[na:na]",
			"java.base/java.net.Socket.connect(Socket.java:633) ~[na:na]",
		} {
			out = append(out, logLine{stream, frame(f)})
		}
		omitted := fmt.Sprintf("\t... %d common frames omitted", len(frames)-1)
		if stripJar {
			omitted = fmt.Sprintf("\t... %d more", len(frames)-1)
		}
		out = append(out, logLine{stream, omitted})
	}
	return out
}
