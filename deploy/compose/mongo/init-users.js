// docker-compose.yml's MongoDB: one user per service, each with a role that may touch only
// that service's collections (deploy/mongodb/roles.json, shared with deploy/k8s/base/mongodb.yaml),
// and a read-only user for `python -m agreements verify`.
//
// The image runs this once, as the root user (MONGO_INITDB_ROOT_USERNAME), when the data
// volume is new. It is idempotent: after roles.json changes (a service reads a new
// collection), apply it to an existing volume with
//   docker-compose exec mongo sh -c 'mongosh -u "$MONGO_INITDB_ROOT_USERNAME" -p "$MONGO_INITDB_ROOT_PASSWORD" \
//     --authenticationDatabase admin /docker-entrypoint-initdb.d/10-wechat-users.js'
// The passwords come from the container's environment (docker-compose.yml passes them from .env).
const fs = require("fs");

const spec = JSON.parse(fs.readFileSync("/etc/wechat-agency/mongo-roles.json", "utf8"));
const admin = db.getSiblingDB("admin");

for (const { role, privileges, roles } of spec.roles) {
  if (admin.getRole(role)) {
    admin.updateRole(role, { privileges, roles });
  } else {
    admin.createRole({ role, privileges, roles });
  }
  print(`role ${role}: ${privileges.map((p) => `${p.resource.collection} [${p.actions.join(",")}]`).join("; ")}`);
}

for (const { user, role, passwordVariable } of spec.users) {
  const pwd = process.env[passwordVariable];
  if (!pwd) {
    throw new Error(`${passwordVariable} is not set: the MongoDB user ${user} needs a password`);
  }
  const roles = [{ role, db: "admin" }];
  if (admin.getUser(user)) {
    admin.updateUser(user, { pwd, roles });
  } else {
    admin.createUser({ user, pwd, roles });
  }
  print(`user ${user}: role ${role}`);
}
