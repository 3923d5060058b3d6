// Package demo serves the live demo of cdc-broadcaster on the example school
// (migrations/010_example_data.sql): a sign-in picker and four dashboards
// (teacher, student, parent, admin) under /demo/, and the small JSON API
// they read under /demo/api/. It is wired only when server.demo is true and
// must never be in production: POST /demo/api/token mints a token for any
// user of the database, no password asked.
//
// # What it serves
//
// The pages, one stylesheet and one ES module per dashboard are embedded
// (static/), with a copy of the browser adapter built from client/
// (static/realtime.js, rebuilt by scripts/build-demo-adapter.sh). Nothing is
// loaded from elsewhere.
//
// The data endpoints stand in for the school application's own API: the
// dashboards render their first state from them and, like an application
// with a query cache, fetch again when an event says something changed or
// when the adapter reports a reset. They are read-only, take the same
// Bearer token as the gateway, and answer only what the caller may see,
// with the same rules as the channels of config.example.yaml: a teacher
// sees the classes they teach, a student themself, a parent their children,
// the admin roles everything. GET /demo/api/names, the activity feed's
// lookup of the names behind the ids events carry, answers any caller: it
// tells names and titles only, which the sign-in picker shows anyone. See
// README.md for the endpoints and for the element ids the browser tests
// rely on.
//
// # Database
//
// The handler reads through the pool it is given (the gateway's read-only
// pool is fine). Besides what migrations/002_replication.sql grants the
// broadcaster's role, it needs the names of users:
//
//	GRANT SELECT (first_name, last_name) ON users TO cdc_broadcaster;
//
// scripts/demo.sh grants it on its throwaway database.
//
// # Concurrency
//
// The handler keeps no state between requests and is safe for concurrent
// use.
package demo
