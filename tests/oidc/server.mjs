// A real OAuth 2.0 authorization server (oidc-provider, pinned in package.json) for
// tower-oauth's client-authentication tests. Test-only: every key it uses is a fixture
// from tests/fixtures/oidc/ or generated at start-up, and it listens on 127.0.0.1 only.
//
//   node tests/oidc/server.mjs [--port N] [--mtls-port N]
//
// Ports also come from OIDC_PORT / OIDC_MTLS_PORT; 0 (the default) lets the OS choose.
// When both listeners are up it prints ONE JSON line to stdout:
//   {"issuer":"http://127.0.0.1:P","token_endpoint":"http://127.0.0.1:P/token",
//    "mtls":"https://127.0.0.1:Q","mtls_token_endpoint":"https://127.0.0.1:Q/token"}
// and nothing else on stdout (oidc-provider's notices go to stderr). It exits when its
// stdin closes, so a test that dies never leaves it running. OIDC_DEBUG=1 logs each
// failed request's error and description (never the request's credentials) to stderr.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import Provider from 'oidc-provider';

// stdout carries the ready line alone: everything the provider prints goes to stderr.
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'oidc');
const fixture = (name) => fs.readFileSync(path.join(fixtures, name), 'utf8');

/** The shared secret of the secret-based clients (32+ bytes, so HS256 accepts it). */
export const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
/** The subject DN (RFC 4514) of tests/fixtures/oidc/client.pem, registered for `mtls`. */
export const CLIENT_SUBJECT_DN = 'CN=mtls,O=tower-oauth tests';

function arg(name, envName) {
  const i = process.argv.indexOf(name);
  const raw = i !== -1 ? process.argv[i + 1] : process.env[envName];
  const port = Number(raw ?? 0);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    console.error(`invalid ${name}: ${raw}`);
    process.exit(2);
  }
  return port;
}

function publicJwk(pemFile, kid, alg) {
  const jwk = crypto.createPublicKey(fixture(pemFile)).export({ format: 'jwk' });
  return { ...jwk, kid, alg, use: 'sig' };
}

function certBase64(pemFile) {
  return fixture(pemFile).replace(/-----(BEGIN|END) CERTIFICATE-----|\s/g, '');
}

/** A certificate's subject as an RFC 4514 string: most specific RDN first, comma-joined. */
function rfc4514(subject) {
  return subject.split('\n').filter(Boolean).reverse().join(',');
}

function peerCertificate(ctx) {
  const socket = ctx.req.socket;
  if (typeof socket.getPeerX509Certificate !== 'function') {
    return undefined; // plain HTTP
  }
  return socket.getPeerX509Certificate();
}

const common = {
  grant_types: ['client_credentials'],
  response_types: [],
  redirect_uris: [],
  scope: 'read write',
};

const clients = [
  { ...common, client_id: 'secret-post', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_post' },
  { ...common, client_id: 'secret-basic', client_secret: SECRET, token_endpoint_auth_method: 'client_secret_basic' },
  {
    ...common,
    client_id: 'secret-jwt',
    client_secret: SECRET,
    token_endpoint_auth_method: 'client_secret_jwt',
    token_endpoint_auth_signing_alg: 'HS256',
  },
  ...[
    ['pkjwt-rs256', 'rsa.pem', 'RS256'],
    ['pkjwt-ps256', 'rsa.pem', 'PS256'],
    ['pkjwt-es256', 'ec.pem', 'ES256'],
    ['pkjwt-eddsa', 'ed25519.pem', 'EdDSA'],
  ].map(([id, pem, alg]) => ({
    ...common,
    client_id: id,
    token_endpoint_auth_method: 'private_key_jwt',
    token_endpoint_auth_signing_alg: alg,
    jwks: { keys: [publicJwk(pem, id, alg)] },
  })),
  {
    ...common,
    client_id: 'mtls',
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_subject_dn: CLIENT_SUBJECT_DN,
    tls_client_certificate_bound_access_tokens: true,
  },
  {
    ...common,
    client_id: 'mtls-self-signed',
    token_endpoint_auth_method: 'self_signed_tls_client_auth',
    tls_client_certificate_bound_access_tokens: true,
    jwks: {
      keys: [{
        ...publicJwk('self-signed-key.pem', 'mtls-self-signed', 'ES256'),
        x5c: [certBase64('self-signed.pem')],
      }],
    },
  },
  {
    ...common,
    client_id: 'dpop',
    client_secret: SECRET,
    token_endpoint_auth_method: 'client_secret_post',
    dpop_bound_access_tokens: true,
  },
];

const port = arg('--port', 'OIDC_PORT');
const mtlsPort = arg('--mtls-port', 'OIDC_MTLS_PORT');

const httpServer = http.createServer();
const httpsServer = https.createServer({
  key: fixture('server-key.pem'),
  cert: fixture('server.pem'),
  ca: fixture('ca.pem'),
  requestCert: true,
  rejectUnauthorized: false, // self-signed client certificates must reach the provider
});

const listen = (server, p) => new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(p, '127.0.0.1', () => resolve(server.address().port));
});

const boundPort = await listen(httpServer, port);
const boundMtlsPort = await listen(httpsServer, mtlsPort);
const issuer = `http://127.0.0.1:${boundPort}`;
const mtlsOrigin = `https://127.0.0.1:${boundMtlsPort}`;

// The provider's own signing key (for ID tokens it never issues here): ephemeral.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const providerKey = { ...privateKey.export({ format: 'jwk' }), kid: 'provider', use: 'sig', alg: 'RS256' };

const provider = new Provider(issuer, {
  clients,
  jwks: { keys: [providerKey] },
  scopes: ['openid', 'read', 'write'],
  clientAuthMethods: [
    'client_secret_basic',
    'client_secret_post',
    'client_secret_jwt',
    'private_key_jwt',
    'tls_client_auth',
    'self_signed_tls_client_auth',
  ],
  enabledJWA: {
    clientAuthSigningAlgValues: ['HS256', 'RS256', 'PS256', 'ES256', 'EdDSA', 'Ed25519'],
    dPoPSigningAlgValues: ['ES256', 'EdDSA', 'Ed25519', 'RS256', 'PS256'],
  },
  cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
  ttl: { ClientCredentials: 600 },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async () => true },
    revocation: { enabled: true },
    dPoP: {
      enabled: true,
      nonceSecret: crypto.randomBytes(32),
      requireNonce: () => true,
      allowReplay: false,
    },
    mTLS: {
      enabled: true,
      tlsClientAuth: true,
      selfSignedTlsClientAuth: true,
      certificateBoundAccessTokens: true,
      getCertificate(ctx) {
        const cert = peerCertificate(ctx);
        return cert ? cert.toString() : undefined;
      },
      certificateAuthorized(ctx) {
        return ctx.req.socket.authorized === true;
      },
      certificateSubjectMatches(ctx, property, expected) {
        const cert = peerCertificate(ctx);
        if (!cert) return false;
        switch (property) {
          case 'tls_client_auth_subject_dn':
            return rfc4514(cert.subject) === expected;
          default:
            throw new Error(`${property} is not supported by this test server`);
        }
      },
    },
  },
  discovery: {
    mtls_endpoint_aliases: {
      token_endpoint: `${mtlsOrigin}/token`,
      introspection_endpoint: `${mtlsOrigin}/token/introspection`,
      revocation_endpoint: `${mtlsOrigin}/token/revocation`,
    },
  },
});

if (process.env.OIDC_DEBUG) {
  for (const event of ['grant.error', 'introspection.error', 'server_error']) {
    provider.on(event, (ctx, err) => {
      console.error(`[oidc ${event}] ${err.error ?? err.name}: ${err.error_description ?? ''} ${err.error_detail ?? err.message ?? ''}`);
    });
  }
}

const callback = provider.callback();
httpServer.on('request', callback);
httpsServer.on('request', callback);

process.stdout.write(`${JSON.stringify({
  issuer,
  token_endpoint: `${issuer}/token`,
  mtls: mtlsOrigin,
  mtls_token_endpoint: `${mtlsOrigin}/token`,
})}\n`);

const stop = () => {
  httpServer.close();
  httpsServer.close();
  process.exit(0);
};
process.stdin.on('end', stop);
process.stdin.on('close', stop);
process.stdin.on('error', stop);
process.stdin.resume();
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
