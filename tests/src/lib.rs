//! `symphainy-tests`: end-to-end tests against a real server, and their fixtures (a Redis
//! server on a free port, a server on port 0, data directories).
