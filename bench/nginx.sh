# Sourced by the benchmarks: installs nginx and wrk from Debian packages when they are missing
# (needs root), builds the release binary (unless $SIEGE names one), and starts nginx on a free loopback port serving a
# 17-byte body. After `start_nginx [http|https]`: $URL, $WORK (removed on exit), $SIEGE, $NGINX.
# For https a self-signed RSA 2048 certificate for 127.0.0.1 is made with openssl.

NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
if [ -z "$NGINX" ] || ! command -v wrk >/dev/null; then
    echo "bench: installing nginx and wrk" >&2
    apt-get update && apt-get install -y nginx wrk
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi

if [ -z "${SIEGE:-}" ]; then
    cargo build --release --quiet --bin siege
    SIEGE=$PWD/target/release/siege
fi

WORK=$(mktemp -d)
NGINX_PID=
cleanup() {
    [ -n "$NGINX_PID" ] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

json() { python3 -c "import json, sys; r = json.load(sys.stdin); print($1)"; }

start_nginx() {
    local scheme=${1:-http} listen tls=
    PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    URL="$scheme://127.0.0.1:$PORT/"
    listen="127.0.0.1:$PORT"
    if [ "$scheme" = https ]; then
        openssl req -x509 -newkey rsa:2048 -nodes -keyout "$WORK/key.pem" -out "$WORK/cert.pem" -days 2 \
            -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
        listen="$listen ssl"
        # nginx 1.22 offers TLS 1.3 only when told to (1.23.4 and later do by default).
        tls="ssl_certificate $WORK/cert.pem; ssl_certificate_key $WORK/key.pem; ssl_protocols TLSv1.2 TLSv1.3;"
    fi
    cat > "$WORK/nginx.conf" <<CONF
daemon off;
worker_processes ${NGINX_WORKERS:-auto};
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # Both tools keep their connections for the whole run.
    keepalive_requests 10000000;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    server {
        listen $listen;
        $tls
        location / {
            default_type text/plain;
            return 200 "hello from nginx\n";
        }
    }
}
CONF
    "$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
        sleep 0.1
    done
}

# The median of the numbers on standard input.
median() { sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
