// The real OAuth2 server of the OAuth tests: the npm package oauth2-mock-server (authorize,
// token, userinfo, PKCE checked), started on a free loopback port, with what the tests need
// around it: unique tokens, refresh tokens that can be revoked (and rotate: each is good once), a chosen
// `expires_in`, counts of every grant, and a protected resource that accepts only live access
// tokens. A second small server on another port controls it.
//
// Prints one line on stdout when ready: READY {"issuer": "...", "control": "..."}
import http from 'node:http';
import { randomUUID } from 'node:crypto';
import { OAuth2Server } from 'oauth2-mock-server';

const server = new OAuth2Server();
await server.issuer.keys.generate('RS256');
await server.start(0, '127.0.0.1');

const stats = { authorization_code: 0, refresh_token: 0, client_credentials: 0, userinfo: 0, refused: 0, resource: 0 };
let expiresIn = 3600;
const refreshTokens = new Set();
const accessTokens = new Set();
const issued = [];

// Every token unique (a JWT's claims alone repeat within a second): a refresh must be seen
// to give a new access token.
server.service.on('beforeTokenSigning', (token) => {
  token.payload.jti = randomUUID();
});

// What each code was authorized for: its token grants the scopes consented to, as real
// providers answer, instead of the package's placeholder scope "dummy".
const codeScopes = new Map();
server.service.on('beforeAuthorizeRedirect', (redirect, req) => {
  const code = redirect.url.searchParams.get('code');
  if (code) codeScopes.set(code, req.query.scope);
});

server.service.on('beforeResponse', (response, req) => {
  const grant = req.body.grant_type;
  if (grant === 'authorization_code' && response.statusCode === 200) {
    const scope = codeScopes.get(req.body.code);
    codeScopes.delete(req.body.code);
    if (scope === undefined) delete response.body.scope;
    else response.body.scope = scope;
  }
  stats[grant] = (stats[grant] ?? 0) + 1;
  if (grant === 'refresh_token') {
    if (!refreshTokens.has(req.body.refresh_token)) {
      stats.refused += 1;
      response.statusCode = 400;
      response.body = { error: 'invalid_grant', error_description: 'unknown or revoked refresh token' };
      return;
    }
    refreshTokens.delete(req.body.refresh_token);
  }
  if (response.statusCode !== 200) return;
  // A refresh that asks for no scope keeps the scope first granted (RFC 6749 §6): say nothing
  // of it, as providers do, instead of the package's placeholder scope "dummy".
  if (grant === 'refresh_token' && req.body.scope === undefined) delete response.body.scope;
  response.body.expires_in = expiresIn;
  accessTokens.add(response.body.access_token);
  issued.push(response.body.access_token);
  if (response.body.refresh_token) {
    refreshTokens.add(response.body.refresh_token);
    issued.push(response.body.refresh_token);
  }
});

server.service.on('beforeUserinfo', (response, req) => {
  stats.userinfo += 1;
  // A bearer token is answered only while it is live, as providers do.
  const bearer = req.headers.authorization;
  if (bearer && !accessTokens.has(bearer.replace(/^Bearer /, ''))) {
    response.statusCode = 401;
    response.body = { error: 'invalid_token' };
    return;
  }
  response.body = {
    sub: 'ada-1815', name: 'Ada Lovelace', given_name: 'Ada', family_name: 'Lovelace',
    email: 'ada@example.com', picture: 'https://example.com/ada.png', phone_number: '+44 20 7946 0000',
  };
});

const json = (res, status, body) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

const control = http.createServer((req, res) => {
  let body = '';
  req.on('data', (chunk) => { body += chunk; });
  req.on('end', () => {
    const url = new URL(req.url, 'http://127.0.0.1');
    if (url.pathname === '/stats') return json(res, 200, stats);
    if (url.pathname === '/issued') return json(res, 200, issued);
    if (url.pathname === '/config' && req.method === 'POST') {
      const config = JSON.parse(body || '{}');
      if (config.expires_in !== undefined) expiresIn = config.expires_in;
      return json(res, 200, { expires_in: expiresIn });
    }
    if (url.pathname === '/revoke-refresh-tokens') { refreshTokens.clear(); return json(res, 200, {}); }
    if (url.pathname === '/invalidate-access-tokens') { accessTokens.clear(); return json(res, 200, {}); }
    if (url.pathname === '/resource') {
      stats.resource += 1;
      const auth = req.headers.authorization ?? '';
      const token = auth.startsWith('Bearer ') ? auth.slice(7) : '';
      if (!accessTokens.has(token)) return json(res, 401, { error: 'invalid_token' });
      return json(res, 200, { ok: true, path: url.pathname, query: Object.fromEntries(url.searchParams) });
    }
    json(res, 404, { error: 'not found' });
  });
});
control.listen(0, '127.0.0.1', () => {
  const issuer = server.issuer.url;
  const controlUrl = `http://127.0.0.1:${control.address().port}`;
  process.stdout.write(`READY ${JSON.stringify({ issuer, control: controlUrl })}\n`);
});

// Ends with the test that started it (its stdin closes when the test process goes).
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
