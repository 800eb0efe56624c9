//! http-hello: a `wasi:http/proxy` component. The shim serves it on the pod's port and runs a
//! fresh instance for every request.
//!
//! Routes:
//! - `/` (and any other path): `200 Hello from wasmkube`, with `content-type` and
//!   `x-wasmkube` headers; the body echoes the method and path on a second line.
//! - `/healthz`: `200 ok` (the operator's default readiness probe).
//! - `/trap`: traps before answering (the shim answers 500 for this request only).
//! - `/sleep?ms=N`: answers after N milliseconds (slow requests for drain tests).
//! - `/spin`: loops forever (the shim's per-request deadline stops it).

use std::io::Write as _;

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Hello;

impl wasip2::exports::http::incoming_handler::Guest for Hello {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_else(|| "/".into());
        let (route, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
        let body = match route {
            "/trap" => panic!("http-hello: /trap asked for a trap"),
            "/spin" => spin(),
            "/healthz" => "ok\n".to_string(),
            "/sleep" => {
                let ms = query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("ms="))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1000);
                wasip2::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
                format!("slept {ms} ms\n")
            }
            _ => format!(
                "Hello from wasmkube\n{} {path}\n",
                method_name(&request.method())
            ),
        };
        respond(out, 200, &body);
    }
}

/// Busy work the compiler cannot remove.
fn spin() -> String {
    let mut x: u64 = 1;
    loop {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        if x == 0 {
            return format!("{x}");
        }
    }
}

fn method_name(method: &Method) -> &str {
    match method {
        Method::Get => "GET",
        Method::Head => "HEAD",
        Method::Post => "POST",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
        Method::Connect => "CONNECT",
        Method::Options => "OPTIONS",
        Method::Trace => "TRACE",
        Method::Patch => "PATCH",
        Method::Other(other) => other,
    }
}

fn respond(out: ResponseOutparam, status: u16, body: &str) {
    let headers = Fields::from_list(&[
        ("content-type".to_string(), b"text/plain; charset=utf-8".to_vec()),
        ("x-wasmkube".to_string(), b"http-hello".to_vec()),
    ])
    .expect("valid headers");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("valid status");
    let outgoing = response.body().expect("body taken once");
    ResponseOutparam::set(out, Ok(response));
    {
        let stream = outgoing.write().expect("stream taken once");
        let mut stream = stream;
        stream.write_all(body.as_bytes()).expect("body written");
        stream.flush().expect("body flushed");
    }
    OutgoingBody::finish(outgoing, None).expect("body finished");
}

wasip2::http::proxy::export!(Hello);
