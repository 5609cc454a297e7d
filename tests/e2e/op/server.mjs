// A real OpenID Provider (panva/oidc-provider) for idp-bridge end-to-end tests.
//
// Usage: node server.mjs CONFIG.json
//
// CONFIG.json:
//   {
//     "issuer": "http://127.0.0.1:PORT[/optional/path]",
//     "port": PORT,                       // optional, defaults to the issuer's port
//     "clients": [{"client_id", "client_secret", "redirect_uris", ...extra metadata}],
//     "accounts": [{"login": "alice", "claims": {"sub", "email", "email_verified", "name", ...},
//                   "password": "optional; when set, the login form must be sent with it"}],
//     "tls": {"cert": "leaf.pem", "key": "leaf-key.pem"},   // optional: serve HTTPS (issuer https://)
//     "entra": {"tenants": ["<tenant GUID>", ...]}             // optional: act as Microsoft Entra ID
//   }
//
// With "entra", `issuer` is the authority (no path) and the server acts as Entra's v2.0 endpoints do:
// one OpenID Provider per tenant at {authority}/{tid}/v2.0 (issuer exactly that, signing in the accounts
// whose `tid` claim is that tenant), and the multi-tenant one at {authority}/organizations/v2.0, signing in
// every account, whose discovery document names the issuer template {authority}/{tenantid}/v2.0 and whose
// ID tokens carry the issuer of the account's own tenant. Every tenant signs with the same key, and no
// authorization response carries `iss` (Entra does not implement RFC 9207).
//
// Prints "READY <issuer>" once listening and exits 0 on SIGTERM/SIGINT.

import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';

import Provider, { interactionPolicy } from 'oidc-provider';

const HOST = '127.0.0.1';
// Claims that standard scopes release; anything else an account carries (hd, tid, oid,
// xms_edov, ...) is attached to the always-present `openid` scope so it is always returned.
const EMAIL_CLAIMS = ['email', 'email_verified'];
const PROFILE_CLAIMS = [
  'name', 'given_name', 'family_name', 'middle_name', 'nickname', 'preferred_username',
  'profile', 'picture', 'website', 'gender', 'birthdate', 'zoneinfo', 'locale', 'updated_at',
];
// Non-standard authorization parameters real IdPs accept; kept so tests can assert on them.
const EXTRA_PARAMS = ['hd', 'domain_hint', 'kc_idp_hint'];

function fail(message) {
  process.stderr.write(`op: ${message}\n`);
  process.exit(2);
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function loadConfig(path) {
  if (!path) fail('usage: node server.mjs CONFIG.json');
  const config = JSON.parse(fs.readFileSync(path, 'utf8'));
  if (typeof config.issuer !== 'string') fail('config.issuer is required');
  const issuer = new URL(config.issuer);
  const scheme = config.tls ? 'https:' : 'http:';
  if (issuer.protocol !== scheme || issuer.hostname !== HOST) {
    fail(`issuer must be ${scheme}//${HOST}:PORT${config.tls ? ' (tls is set)' : ''}, got ${config.issuer}`);
  }
  const port = Number(config.port ?? issuer.port);
  if (!Number.isInteger(port) || port <= 0) fail('a port is required (config.port or in the issuer)');
  let tls;
  if (config.tls) {
    if (typeof config.tls.cert !== 'string' || typeof config.tls.key !== 'string') {
      fail('config.tls needs the paths cert and key');
    }
    tls = { cert: fs.readFileSync(config.tls.cert), key: fs.readFileSync(config.tls.key) };
  }
  let entra;
  if (config.entra) {
    const tenants = config.entra.tenants ?? [];
    if (!Array.isArray(tenants) || !tenants.length || !tenants.every((tid) => GUID.test(tid))) {
      fail(`config.entra.tenants must be a non-empty list of tenant GUIDs: ${JSON.stringify(tenants)}`);
    }
    if (issuer.pathname !== '/') fail(`with entra, the issuer is the authority, without a path: ${config.issuer}`);
    entra = { tenants: tenants.map((tid) => tid.toLowerCase()) };
  }

  const accounts = new Map();
  for (const account of config.accounts ?? []) {
    const sub = account?.claims?.sub;
    if (typeof account.login !== 'string' || typeof sub !== 'string') {
      fail(`every account needs a string login and claims.sub: ${JSON.stringify(account)}`);
    }
    if (account.password !== undefined && typeof account.password !== 'string') {
      fail(`an account's password must be a string: ${account.login}`);
    }
    if (entra && !entra.tenants.includes(String(account.claims.tid ?? '').toLowerCase())) {
      fail(`with entra, every account's claims.tid must be one of the tenants: ${account.login}`);
    }
    accounts.set(account.login, { login: account.login, password: account.password, claims: { ...account.claims } });
  }
  return {
    issuer: config.issuer.replace(/\/$/, ''),
    port,
    tls,
    entra,
    clients: config.clients ?? [],
    accounts,
  };
}

function escapeHtml(value) {
  return String(value ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function signingKey() {
  // A fresh key per process: tests must fetch the JWKS rather than trust a baked-in key.
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomUUID(), alg: 'RS256', use: 'sig' };
}

function claimsConfig(accounts) {
  const standard = new Set(['sub', ...EMAIL_CLAIMS, ...PROFILE_CLAIMS]);
  const extra = new Set();
  for (const { claims } of accounts.values()) {
    for (const name of Object.keys(claims)) {
      if (!standard.has(name)) extra.add(name);
    }
  }
  return {
    openid: ['sub', ...extra],
    email: EMAIL_CLAIMS,
    profile: PROFILE_CLAIMS,
  };
}

function buildPolicy() {
  const policy = interactionPolicy.base();
  // Consent is never asked: loadExistingGrant below grants whatever was requested.
  policy.remove('consent');
  // oidc-provider rejects prompt values that no policy entry makes requestable, and Google
  // style clients send prompt=select_account; a requestable prompt with no other checks
  // makes it accepted and always forces the (login) interaction page.
  policy.add(new interactionPolicy.Prompt({ name: 'select_account', requestable: true }));
  return policy;
}

function loginPage({ action, login = '', error = '', prompt = '', clientId = '' }) {
  const errorHtml = error ? `<p class="error" id="error" role="alert">${escapeHtml(error)}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>Sign in - test OP</title></head>
<body>
<h1>Sign in</h1>
<p>Client <code>${escapeHtml(clientId)}</code> asks you to sign in (prompt: ${escapeHtml(prompt)}).</p>
${errorHtml}
<form method="post" action="${escapeHtml(action)}" autocomplete="off">
<label for="login">Account</label>
<input name="login" id="login" value="${escapeHtml(login)}" autofocus>
<label for="password">Password</label>
<input name="password" id="password" type="password">
<button type="submit">Sign in</button>
</form>
</body>
</html>`;
}

function samePassword(given, expected) {
  const a = crypto.createHash('sha256').update(given).digest();
  const b = crypto.createHash('sha256').update(expected).digest();
  return crypto.timingSafeEqual(a, b);
}

async function readForm(req, limit = 64 * 1024) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new Error('form body too large');
  }
  return new URLSearchParams(body);
}

function sendHtml(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

function sendJson(res, status, value) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'application/json');
  res.setHeader('Cache-Control', 'no-store');
  res.end(JSON.stringify(value));
}

const config = loadConfig(process.argv[2]);
const { port } = config;
// One key for every provider the server runs: Entra signs every tenant's tokens with the same keys.
const signingJwk = signingKey();
// Authorization requests seen, by any of the providers, so tests can assert on what the relying party sent.
const authorizationRequests = [];

// Strips RFC 9207's `iss` from an authorization response, as Entra never sends it.
function withoutIssParameter(location) {
  // Relative for the OP's own pages (the interaction), absolute for the client's redirect_uri.
  const url = new URL(location, config.issuer);
  if (!url.searchParams.has('iss')) return location;
  url.searchParams.delete('iss');
  return url.href;
}

// One oidc-provider instance: `issuer` (served under its path), the accounts it signs in, and its cookie
// name prefix. With `entra`, it behaves as an Entra v2.0 endpoint (see the top of this file); `tokenIssuer`
// (multi-tenant only) names the `iss` of an account's ID token, `discoveryIssuer` the issuer its discovery
// document names.
function createInstance({ issuer, accounts, cookiePrefix, entra }) {
  const mountPath = new URL(issuer).pathname.replace(/\/$/, '');
  const provider = new Provider(issuer, {
    clients: config.clients.map((client) => ({
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      ...client,
    })),
    jwks: { keys: [{ ...signingJwk }] },
    claims: claimsConfig(accounts),
    // Put the scope's claims (email, name, hd, tid...) into the ID token too, as Google and
    // Entra do, instead of only at the userinfo endpoint.
    conformIdTokenClaims: false,
    extraParams: EXTRA_PARAMS,
    pkce: { required: () => true },
    responseTypes: ['code'],
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    cookies: {
      names: {
        session: `${cookiePrefix}_session`,
        interaction: `${cookiePrefix}_interaction`,
        resume: `${cookiePrefix}_interaction_resume`,
      },
      keys: [crypto.randomBytes(32).toString('base64url')],
      // No explicit `secure` flag: oidc-provider adds it when the request itself is secure (the
      // OP serving HTTPS), and proxy headers are ignored (provider.proxy = false).
      long: { httpOnly: true, sameSite: 'lax' },
      short: { httpOnly: true, sameSite: 'lax' },
    },
    features: {
      devInteractions: { enabled: false },
      rpInitiatedLogout: { enabled: true },
      userinfo: { enabled: true },
    },
    interactions: {
      policy: buildPolicy(),
      url: (_ctx, interaction) => `${mountPath}/interaction/${interaction.uid}`,
    },
    async findAccount(_ctx, id) {
      const account = [...accounts.values()].find((a) => a.claims.sub === id);
      if (!account) return undefined;
      return {
        accountId: id,
        // Read by the multi-tenant issuer below while it issues this account's ID token.
        tenant: account.claims.tid,
        async claims() {
          return { ...account.claims, sub: id };
        },
      };
    },
    async loadExistingGrant(ctx) {
      // Auto-consent: every authorization gets a grant for exactly what it asked for, bound to
      // the account now signed in (a reused grant could belong to a previous account).
      const { oidc } = ctx;
      const grant = new oidc.provider.Grant({
        clientId: oidc.client.clientId,
        accountId: oidc.session.accountId,
      });
      grant.addOIDCScope([...oidc.requestParamOIDCScopes].join(' '));
      if (oidc.requestParamClaims.size) grant.addOIDCClaims([...oidc.requestParamClaims]);
      await grant.save();
      return grant;
    },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 120,
      IdToken: 3600,
      Interaction: 900,
      Session: 3600,
      Grant: 3600,
      RefreshToken: 3600,
    },
    async renderError(ctx, out) {
      ctx.type = 'html';
      ctx.body = `<!DOCTYPE html><html><head><title>OP error</title></head><body>
<h1>OP error</h1><pre id="op-error">${escapeHtml(JSON.stringify(out, null, 2))}</pre></body></html>`;
    },
  });
  provider.proxy = false;

  if (entra?.tokenIssuer) {
    // oidc-provider signs every ID token with its one issuer; Entra's multi-tenant endpoint issues each
    // account's tokens as the account's own tenant. While the token endpoint issues an account's tokens
    // (Provider.ctx is the request in flight), the issuer is that tenant's; everywhere else the instance's.
    const own = provider.issuer;
    Object.defineProperty(provider, 'issuer', {
      configurable: true,
      enumerable: true,
      get() {
        const oidc = Provider.ctx?.oidc;
        const tenant = oidc?.route === 'token' ? oidc.account?.tenant : undefined;
        return tenant ? entra.tokenIssuer(tenant) : own;
      },
    });
  }
  if (entra) {
    provider.use(async (ctx, next) => {
      await next();
      const route = ctx.oidc?.route;
      if (route === 'discovery' && ctx.body && typeof ctx.body === 'object') {
        delete ctx.body.authorization_response_iss_parameter_supported;
        if (entra.discoveryIssuer) ctx.body.issuer = entra.discoveryIssuer;
      }
      const location = ctx.response.get('Location');
      if ((route === 'authorization' || route === 'resume') && location) {
        ctx.set('Location', withoutIssParameter(location));
      }
    });
  }

  for (const event of ['server_error', 'authorization.error', 'grant.error', 'end_session.error']) {
    provider.on(event, (_ctx, err) => {
      process.stderr.write(`op: ${issuer}: ${event}: ${err?.name}: ${err?.message} ${err?.error_description ?? ''}\n`);
    });
  }
  return { issuer, mountPath, provider, accounts, callback: provider.callback() };
}

function instances() {
  // Every cookie on 127.0.0.1 is shared by all ports (the app, the redirect catcher, other
  // OPs), so the names carry the port to keep two providers in one browser apart.
  const prefix = `op${port}`;
  if (!config.entra) {
    return [createInstance({ issuer: config.issuer, accounts: config.accounts, cookiePrefix: prefix })];
  }
  const authority = config.issuer;
  const tenantIssuer = (tid) => `${authority}/${tid}/v2.0`;
  const ofTenant = (tid) => new Map([...config.accounts].filter(
    ([, account]) => String(account.claims.tid).toLowerCase() === tid,
  ));
  return [
    ...config.entra.tenants.map((tid, index) => createInstance({
      issuer: tenantIssuer(tid), accounts: ofTenant(tid), cookiePrefix: `${prefix}_t${index}`, entra: {},
    })),
    createInstance({
      issuer: `${authority}/organizations/v2.0`,
      accounts: config.accounts,
      cookiePrefix: `${prefix}_orgs`,
      entra: { tokenIssuer: tenantIssuer, discoveryIssuer: tenantIssuer('{tenantid}') },
    }),
  ];
}

const served = instances();

async function handleInteraction(instance, req, res, uid, action) {
  const { provider } = instance;
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    sendHtml(res, 400, `<!DOCTYPE html><p id="op-error">${escapeHtml(err.message)}</p>`);
    return;
  }
  const formAction = `${instance.mountPath}/interaction/${uid}/login`;
  const view = {
    action: formAction,
    prompt: details.prompt.name,
    clientId: details.params.client_id,
  };

  if (req.method === 'GET' && !action) {
    sendHtml(res, 200, loginPage({ ...view, login: details.params.login_hint ?? '' }));
    return;
  }
  if (req.method === 'POST' && action === 'login') {
    const form = await readForm(req);
    const login = (form.get('login') ?? '').trim();
    const account = instance.accounts.get(login);
    if (!account) {
      sendHtml(res, 200, loginPage({ ...view, login, error: `Unknown account "${login}".` }));
      return;
    }
    if (account.password !== undefined && !samePassword(form.get('password') ?? '', account.password)) {
      sendHtml(res, 200, loginPage({ ...view, login, error: 'Wrong password.' }));
      return;
    }
    // Resolving select_account alongside login stops the select_account prompt from asking
    // again on resume; mergeWithLastSubmission=false so nothing of a prior login leaks in.
    await provider.interactionFinished(req, res, {
      login: { accountId: account.claims.sub, remember: true },
      select_account: {},
    }, { mergeWithLastSubmission: false });
    return;
  }
  sendHtml(res, 405, '<!DOCTYPE html><p>method not allowed</p>');
}

const interactionRoute = /^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login))?\/?$/;

function instanceFor(pathname) {
  return served.find(({ mountPath }) => !mountPath || pathname === mountPath
    || pathname.startsWith(`${mountPath}/`));
}

async function handle(req, res) {
  try {
    const url = new URL(req.url, config.issuer);
    const instance = instanceFor(url.pathname);
    if (!instance) {
      sendJson(res, 404, { error: 'not_found' });
      return;
    }
    const { mountPath } = instance;
    const path = url.pathname.slice(mountPath.length) || '/';

    if (path === '/__harness/authorizations' && req.method === 'GET') {
      sendJson(res, 200, authorizationRequests);
      return;
    }
    const interaction = interactionRoute.exec(path);
    if (interaction) {
      await handleInteraction(instance, req, res, interaction[1], interaction[2]);
      return;
    }
    if (path === '/auth' && req.method === 'GET') {
      authorizationRequests.push(Object.fromEntries(url.searchParams));
    }
    if (mountPath) {
      // Express-style mounting: oidc-provider derives its mount path from originalUrl.
      req.originalUrl = req.url;
      req.url = path + url.search;
    }
    instance.callback(req, res);
  } catch (err) {
    process.stderr.write(`op: request failed: ${err?.stack ?? err}\n`);
    if (!res.headersSent) sendJson(res, 500, { error: 'server_error' });
    else res.end();
  }
}

const server = config.tls ? https.createServer(config.tls, handle) : http.createServer(handle);

server.listen(port, HOST, () => {
  process.stdout.write(`READY ${config.issuer}\n`);
});

function shutdown(signal) {
  process.stderr.write(`op: ${signal}, shutting down\n`);
  // Browsers keep connections alive; drop them so close() does not wait for them.
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2000).unref();
}
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));
