// Proves tests/oidc/server.mjs's configuration end to end, independently of the Rust
// code: every configured client gets a token the way RFC 6749/7523/8705/9449 say, and
// the server refuses what it must. Test-only.
//
//   node tests/oidc/selfcheck.mjs <issuer> <mtls-origin>
//
// Exits 0 when every check passed, 1 otherwise. Prints one line per check and never a
// secret, key or token.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

import { SignJWT, calculateJwkThumbprint, exportJWK, importPKCS8 } from 'jose';

const [issuer, mtlsOrigin] = process.argv.slice(2);
if (!issuer || !mtlsOrigin) {
  console.error('usage: node tests/oidc/selfcheck.mjs <issuer> <mtls-origin>');
  process.exit(2);
}

const here = path.dirname(fileURLToPath(import.meta.url));
const fixtures = path.join(here, '..', 'fixtures', 'oidc');
const fixture = (name) => fs.readFileSync(path.join(fixtures, name), 'utf8');

const SECRET = 'test-secret-0123456789abcdef0123456789abcdef';
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
const tokenEndpoint = `${issuer}/token`;
const mtlsTokenEndpoint = `${mtlsOrigin}/token`;

let passed = 0;
let failed = 0;
function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`ok   ${name}`);
  } else {
    failed += 1;
    console.log(`FAIL ${name} ${detail}`);
  }
}

/** POSTs a form; `tls` adds client-certificate options for the mTLS listener. */
function post(url, form, { headers = {}, tls = {} } = {}) {
  const body = new URLSearchParams(form).toString();
  const target = new URL(url);
  const mod = target.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(target, {
      method: 'POST',
      headers: {
        'content-type': 'application/x-www-form-urlencoded',
        'content-length': Buffer.byteLength(body),
        ...headers,
      },
      ca: fixture('ca.pem'),
      ...tls,
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, json });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function getJson(url) {
  const res = await fetch(url);
  return res.json();
}

const describe = (res) => `status=${res.status} error=${res.json?.error} description=${res.json?.error_description}`;
const isToken = (res, scope = 'read') => res.status === 200
  && typeof res.json?.access_token === 'string'
  && typeof res.json?.expires_in === 'number' && res.json.expires_in > 0
  && res.json?.scope === scope;

async function introspect(token, endpoint = `${issuer}/token/introspection`) {
  const res = await post(endpoint, {
    token, client_id: 'secret-post', client_secret: SECRET,
  });
  return res.json ?? {};
}

const now = () => Math.floor(Date.now() / 1000);

// `kid` defaults to the client id (every private_key_jwt JWK is registered with
// kid = client id); `kid: null` leaves it out.
async function assertion(clientId, key, alg, {
  aud = tokenEndpoint, jti = crypto.randomUUID(), exp = now() + 60, kid = clientId,
} = {}) {
  const header = kid === null ? { alg, typ: 'JWT' } : { alg, typ: 'JWT', kid };
  return new SignJWT({})
    .setProtectedHeader(header)
    .setIssuer(clientId)
    .setSubject(clientId)
    .setAudience(aud)
    .setJti(jti)
    .setIssuedAt()
    .setExpirationTime(exp)
    .sign(key);
}

const assertionForm = (jwt) => ({
  grant_type: 'client_credentials',
  scope: 'read',
  client_assertion_type: ASSERTION_TYPE,
  client_assertion: jwt,
});

// --- discovery ---------------------------------------------------------------
const discovery = await getJson(`${issuer}/.well-known/openid-configuration`);
check('discovery: issuer', discovery.issuer === issuer);
for (const m of ['client_secret_basic', 'client_secret_post', 'client_secret_jwt', 'private_key_jwt', 'tls_client_auth', 'self_signed_tls_client_auth']) {
  check(`discovery: auth method ${m}`, discovery.token_endpoint_auth_methods_supported?.includes(m));
}
for (const alg of ['ES256', 'EdDSA', 'RS256', 'PS256']) {
  check(`discovery: DPoP alg ${alg}`, discovery.dpop_signing_alg_values_supported?.includes(alg));
}
check('discovery: mTLS token endpoint alias', discovery.mtls_endpoint_aliases?.token_endpoint === mtlsTokenEndpoint);
check('discovery: certificate-bound tokens', discovery.tls_client_certificate_bound_access_tokens === true);

// --- client secrets ----------------------------------------------------------
{
  const res = await post(tokenEndpoint, {
    grant_type: 'client_credentials', scope: 'read', client_id: 'secret-post', client_secret: SECRET,
  });
  check('client_secret_post: token with scope read', isToken(res), describe(res));
  const info = await introspect(res.json?.access_token);
  check('client_secret_post: introspection active, Bearer, unbound', info.active === true && info.client_id === 'secret-post' && info.scope === 'read' && info.cnf === undefined && info.token_type === 'Bearer');
}
{
  const basic = Buffer.from(`secret-basic:${SECRET}`).toString('base64');
  const res = await post(tokenEndpoint, { grant_type: 'client_credentials', scope: 'read write' }, { headers: { authorization: `Basic ${basic}` } });
  check('client_secret_basic: token with scope "read write"', isToken(res, 'read write'), describe(res));
  const wrong = Buffer.from('secret-basic:wrong-secret').toString('base64');
  const bad = await post(tokenEndpoint, { grant_type: 'client_credentials', scope: 'read' }, { headers: { authorization: `Basic ${wrong}` } });
  check('client_secret_basic: a wrong secret is invalid_client (401)', bad.status === 401 && bad.json?.error === 'invalid_client', describe(bad));
}

// --- client_secret_jwt -------------------------------------------------------
{
  const key = new TextEncoder().encode(SECRET);
  // The secret's symmetric key has no kid: an HS256 assertion must carry none.
  const res = await post(tokenEndpoint, assertionForm(await assertion('secret-jwt', key, 'HS256', { aud: issuer, kid: null })));
  check('client_secret_jwt HS256 (aud = issuer, no kid): token', isToken(res), describe(res));
  const withKid = await post(tokenEndpoint, assertionForm(await assertion('secret-jwt', key, 'HS256', { kid: 'secret-jwt' })));
  check('client_secret_jwt with a kid header: invalid_client (no key has that kid)', withKid.status === 401 && withKid.json?.error === 'invalid_client', describe(withKid));
  const wrongKey = new TextEncoder().encode(`${SECRET}-wrong`);
  const bad = await post(tokenEndpoint, assertionForm(await assertion('secret-jwt', wrongKey, 'HS256', { kid: null })));
  check('client_secret_jwt with the wrong secret: invalid_client', bad.status === 401 && bad.json?.error === 'invalid_client', describe(bad));
}

// --- private_key_jwt ---------------------------------------------------------
for (const [clientId, pem, alg] of [
  ['pkjwt-rs256', 'rsa.pem', 'RS256'],
  ['pkjwt-ps256', 'rsa.pem', 'PS256'],
  ['pkjwt-es256', 'ec.pem', 'ES256'],
  ['pkjwt-eddsa', 'ed25519.pem', 'EdDSA'],
]) {
  const key = await importPKCS8(fixture(pem), alg);
  const jwt = await assertion(clientId, key, alg);
  const res = await post(tokenEndpoint, assertionForm(jwt));
  check(`private_key_jwt ${alg} (aud = token endpoint): token`, isToken(res), describe(res));
  const replay = await post(tokenEndpoint, assertionForm(jwt));
  check(`private_key_jwt ${alg}: a replayed assertion (same jti) is invalid_client`, replay.status === 401 && replay.json?.error === 'invalid_client', describe(replay));
}
{
  const rs = await importPKCS8(fixture('rsa.pem'), 'RS256');
  const viaIssuer = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', rs, 'RS256', { aud: issuer })));
  check('private_key_jwt: aud = issuer accepted', isToken(viaIssuer), describe(viaIssuer));
  const noKid = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', rs, 'RS256', { kid: null })));
  check('private_key_jwt: an assertion without kid accepted', isToken(noKid), describe(noKid));
  const viaArray = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', rs, 'RS256', { aud: ['https://elsewhere.invalid', tokenEndpoint] })));
  check('private_key_jwt: aud array containing the token endpoint accepted', isToken(viaArray), describe(viaArray));
  const wrongAud = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', rs, 'RS256', { aud: `${issuer}/elsewhere` })));
  check('private_key_jwt: another aud is invalid_client', wrongAud.status === 401 && wrongAud.json?.error === 'invalid_client', describe(wrongAud));
  const expired = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', rs, 'RS256', { exp: now() - 120 })));
  check('private_key_jwt: an expired assertion is invalid_client', expired.status === 401 && expired.json?.error === 'invalid_client', describe(expired));
  const ps = await importPKCS8(fixture('rsa.pem'), 'PS256');
  const wrongAlg = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', ps, 'PS256')));
  check('private_key_jwt: an alg other than the registered one is invalid_client', wrongAlg.status === 401 && wrongAlg.json?.error === 'invalid_client', describe(wrongAlg));
  const wrong = await importPKCS8(fixture('wrong-rsa.pem'), 'RS256');
  const wrongKey = await post(tokenEndpoint, assertionForm(await assertion('pkjwt-rs256', wrong, 'RS256')));
  check('private_key_jwt: an unregistered key (wrong-rsa.pem) is invalid_client', wrongKey.status === 401 && wrongKey.json?.error === 'invalid_client', describe(wrongKey));
  // On the mTLS alias the alias's own token endpoint URL is an accepted aud too.
  const es = await importPKCS8(fixture('ec.pem'), 'ES256');
  const viaAlias = await post(mtlsTokenEndpoint, assertionForm(await assertion('pkjwt-es256', es, 'ES256', { aud: mtlsTokenEndpoint })));
  check('private_key_jwt on the mTLS alias: aud = alias token endpoint accepted', isToken(viaAlias), describe(viaAlias));
}

// --- mTLS (RFC 8705) ---------------------------------------------------------
const thumbprint = (pemFile) => crypto.hash('sha256', new crypto.X509Certificate(fixture(pemFile)).raw, 'base64url');
{
  const tls = { cert: fixture('client.pem'), key: fixture('client-key.pem') };
  const res = await post(mtlsTokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'mtls' }, { tls });
  check('tls_client_auth: token', isToken(res), describe(res));
  const info = await introspect(res.json?.access_token);
  check('tls_client_auth: token bound to the certificate (cnf.x5t#S256)', info.active === true && info.cnf?.['x5t#S256'] === thumbprint('client.pem'));
  const noCert = await post(mtlsTokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'mtls' });
  check('tls_client_auth: no certificate is invalid_client', noCert.status === 401 && noCert.json?.error === 'invalid_client', describe(noCert));
  const selfSigned = { cert: fixture('self-signed.pem'), key: fixture('self-signed-key.pem') };
  const untrusted = await post(mtlsTokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'mtls' }, { tls: selfSigned });
  check('tls_client_auth: a certificate not from the CA is invalid_client', untrusted.status === 401 && untrusted.json?.error === 'invalid_client', describe(untrusted));
  const plain = await post(tokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'mtls' });
  check('tls_client_auth over plain HTTP: invalid_client', plain.status === 401 && plain.json?.error === 'invalid_client', describe(plain));
}
{
  const tls = { cert: fixture('self-signed.pem'), key: fixture('self-signed-key.pem') };
  const res = await post(mtlsTokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'mtls-self-signed' }, { tls });
  check('self_signed_tls_client_auth: token', isToken(res), describe(res));
  const info = await introspect(res.json?.access_token);
  check('self_signed_tls_client_auth: token bound to the certificate', info.active === true && info.cnf?.['x5t#S256'] === thumbprint('self-signed.pem'));
  const other = { cert: fixture('client.pem'), key: fixture('client-key.pem') };
  const bad = await post(mtlsTokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'mtls-self-signed' }, { tls: other });
  check('self_signed_tls_client_auth: an unregistered certificate is invalid_client', bad.status === 401 && bad.json?.error === 'invalid_client', describe(bad));
}

// --- DPoP (RFC 9449) ---------------------------------------------------------
{
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = await exportJWK(publicKey);
  const jkt = await calculateJwkThumbprint(jwk);
  const proof = (claims = {}) => new SignJWT({ htm: 'POST', htu: tokenEndpoint, ...claims })
    .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
    .setJti(crypto.randomUUID())
    .setIssuedAt()
    .sign(privateKey);
  const form = { grant_type: 'client_credentials', scope: 'read', client_id: 'dpop', client_secret: SECRET };

  const none = await post(tokenEndpoint, form);
  check('DPoP client without a proof: 400 invalid_grant', none.status === 400 && none.json?.error === 'invalid_grant', describe(none));

  const first = await post(tokenEndpoint, form, { headers: { dpop: await proof() } });
  const nonce = first.headers['dpop-nonce'];
  check('DPoP proof without a nonce: 400 use_dpop_nonce with a DPoP-Nonce header', first.status === 400 && first.json?.error === 'use_dpop_nonce' && typeof nonce === 'string' && nonce.length > 0, describe(first));

  const wrongHtu = await post(tokenEndpoint, form, { headers: { dpop: await proof({ nonce, htu: `${issuer}/elsewhere` }) } });
  check('DPoP proof with the wrong htu: invalid_dpop_proof', wrongHtu.status === 400 && wrongHtu.json?.error === 'invalid_dpop_proof', describe(wrongHtu));

  const retryProof = await proof({ nonce });
  const second = await post(tokenEndpoint, form, { headers: { dpop: retryProof } });
  check('DPoP proof with the nonce: a DPoP token', isToken(second) && second.json?.token_type === 'DPoP', describe(second));
  const info = await introspect(second.json?.access_token);
  check('DPoP token: introspection active with cnf.jkt = the proof key thumbprint', info.active === true && info.cnf?.jkt === jkt && info.token_type === 'DPoP');

  const replay = await post(tokenEndpoint, form, { headers: { dpop: retryProof } });
  check('DPoP: a replayed proof (same jti) is refused', replay.status === 400 && replay.json?.error === 'invalid_grant', describe(replay));

  const plainClient = await post(tokenEndpoint, { grant_type: 'client_credentials', scope: 'read', client_id: 'secret-post', client_secret: SECRET }, { headers: { dpop: await proof({ nonce }) } });
  check('DPoP proof from a client not requiring DPoP: a DPoP-bound token', isToken(plainClient) && plainClient.json?.token_type === 'DPoP', describe(plainClient));
}

console.log(`selfcheck: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
