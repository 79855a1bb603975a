// A real OpenID provider (oidc-provider, its built-in sign-in and consent pages) on
// loopback for tests/sso. Configured by one JSON argument:
//   {"port": 0, "clients": [...client metadata...], "users": {"login": {claims}},
//    "idTokenTTL": 3600, "tokenDelayMs": 0, "tamper": null}
// Any password is accepted for a known login; an unknown login cannot sign in.
// For tests of refused ID tokens: "tokenDelayMs" holds each token endpoint answer that
// long after the token was minted (with a short idTokenTTL it arrives expired);
// "tamper" alters the ID token in that answer: "signature" (one signature character),
// "claims" (groups made ["ct-admin"], the signature kept) or "none" (alg "none",
// no signature).
// A fresh RSA signing key (random kid) is made at every start, so a restart on the
// same port is a key rotation. Prints one JSON line {"issuer": URL} once listening.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider from 'oidc-provider';

const config = JSON.parse(process.argv[2] || '{}');
const users = config.users || {};

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const server = http.createServer();
server.listen(config.port || 0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: config.clients || [],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    conformIdTokenClaims: false,
    scopes: ['openid', 'email', 'profile', 'groups', 'offline_access'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    ttl: { IdToken: config.idTokenTTL || 3600 },
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    async findAccount(ctx, id) {
      if (!Object.prototype.hasOwnProperty.call(users, id)) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...users[id] }; } };
    },
  });
  provider.use(async (ctx, next) => {
    await next();
    if (ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
    if (config.tokenDelayMs) await new Promise((resolve) => setTimeout(resolve, config.tokenDelayMs));
    if (config.tamper) {
      const altered = tamper(ctx.body.id_token, config.tamper);
      if (altered === ctx.body.id_token) throw new Error(`tamper ${config.tamper} changed nothing`);
      ctx.body = { ...ctx.body, id_token: altered };
    }
  });
  provider.on('server_error', (ctx, err) => { process.stderr.write(`server_error: ${err.stack}\n`); });
  server.on('request', provider.callback());
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));

function tamper(idToken, mode) {
  const [header, payload, signature] = idToken.split('.');
  const b64 = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  if (mode === 'signature') {
    const i = Math.floor(signature.length / 2);
    return `${header}.${payload}.${signature.slice(0, i)}${signature[i] === 'A' ? 'B' : 'A'}${signature.slice(i + 1)}`;
  }
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  if (mode === 'claims') return `${header}.${b64({ ...claims, groups: ['ct-admin'] })}.${signature}`;
  if (mode === 'none') return `${b64({ alg: 'none', typ: 'JWT' })}.${payload}.`;
  throw new Error(`unknown tamper mode ${mode}`);
}
