// A real OpenID provider (oidc-provider, its built-in sign-in and consent pages) on
// loopback for tests/sso. Configured by one JSON argument:
//   {"port": 0, "clients": [...client metadata...], "users": {"login": {claims}},
//    "idTokenTTL": 3600}
// Any password is accepted for a known login; an unknown login cannot sign in.
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
  provider.on('server_error', (ctx, err) => { process.stderr.write(`server_error: ${err.stack}\n`); });
  server.on('request', provider.callback());
  process.stdout.write(JSON.stringify({ issuer }) + '\n');
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => process.exit(0));
