-- Step 5 — who gets a row (DESIGN "Who gets a row"): every member of the audience, any status,
-- and every live contact with a group_contact row or any history row for the group that no
-- member matched (the candidates for R6 and R10 with Mailchimp absent). Each row gathers both
-- sides' state and the facts the exceptions test:
--   other_member_in / other_in_email   R2 other_email_subscribed
--   latest_in_changed / latest_in_email  R9 other_email_subscribed (step 6)
--   best_email_is_member / best_email_added_for_other / shared_with
--                                      R6 email_shared_with_other_contact
--   member_on_hold                     R7 email_on_hold
--   member_defect                      every rule: a member record unsafe to act on (step 1)
--   duplicate_contacts, contact_deleted  the flags of the same names
-- (Joins on small per-key aggregates rather than window functions: this is the step that sees
-- every person, and it must stay close to the cost of one join at a million people.)

-- Per matched contact, its MC-in members (R2: another member matched to the same contact), and
-- the latest of them (R9: another MC-in member that wins against CiviCRM, step 6).
CREATE OR REPLACE TEMP TABLE m_contact_in AS
SELECT mm.contact_id, count(*) AS n_in, min(m.email_address) AS in_email,
       max(m.last_changed) AS latest_in_changed,
       arg_max(m.email_address, m.last_changed) AS latest_in_email
FROM m_match mm JOIN m_member m USING (member_id)
WHERE m.mc_in
GROUP BY mm.contact_id;

-- The rows themselves, each with its person_id: a sort on the data alone (address, then contact
-- id, then member id), so the result does not depend on row order. A row carries its member's
-- columns and its contact's best email, read here once for the sort, so the `people` view below
-- need not join m_member and c_best again (two of its costliest joins at a million people).
CREATE OR REPLACE TEMP TABLE p_rows AS
WITH rows AS (
    SELECT m.member_id, mm.contact_id, mm.n_owners, m.email_address, m.norm, m.status,
           m.last_changed, m.member_defect, m.mc_in
    FROM m_member m LEFT JOIN m_match mm USING (member_id)
    UNION ALL
    SELECT NULL, s.contact_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM c_state s
    WHERE s.in_population
      AND NOT EXISTS (SELECT 1 FROM m_match mm WHERE mm.contact_id = s.contact_id)
)
SELECT r.*, b.best_email, b.best_norm,
       row_number() OVER (ORDER BY coalesce(r.norm, b.best_norm) NULLS LAST,
                          r.contact_id NULLS LAST, r.member_id NULLS LAST) AS person_id
FROM rows r
LEFT JOIN c_best b ON b.contact_id = r.contact_id;

-- For the best addresses of contacts' own rows (the R6 candidates): how many live contacts own
-- the address (flag duplicate_contacts), the contact its member, if any, was matched to, and —
-- when no member has it — the one contact to add it for: the lowest id among the Civi-in own
-- rows with it as best address, as matching step 2 would pick once it is a member (R6
-- email_shared_with_other_contact for the others: one address is one Mailchimp member).
CREATE OR REPLACE TEMP TABLE c_addr_owner AS
WITH wanted AS (
    SELECT DISTINCT best_norm AS norm
    FROM p_rows
    WHERE member_id IS NULL AND best_norm IS NOT NULL
), o AS (
    SELECT norm, count(*) AS n_owners FROM c_owner SEMI JOIN wanted USING (norm) GROUP BY norm
), mo AS (
    SELECT m.norm, min(mm.contact_id) AS member_contact
    FROM m_member m SEMI JOIN wanted USING (norm) JOIN m_match mm USING (member_id)
    GROUP BY m.norm
), ad AS (
    SELECT r.best_norm AS norm, min(r.contact_id) AS add_contact
    FROM p_rows r JOIN c_state s USING (contact_id)
    WHERE r.member_id IS NULL AND r.best_norm IS NOT NULL AND s.civi_in
    GROUP BY r.best_norm
)
SELECT o.norm, o.n_owners, mo.member_contact, ad.add_contact
FROM o LEFT JOIN mo USING (norm) LEFT JOIN ad USING (norm);

CREATE OR REPLACE TEMP VIEW people AS
SELECT r.person_id,
       r.member_id,
       r.contact_id,
       r.email_address,
       r.norm AS member_norm,
       r.status AS mailchimp_status,
       r.last_changed AS mailchimp_changed,
       r.member_defect,
       coalesce(r.mc_in, false) AS mc_in,
       r.member_id IS NOT NULL AS has_member,
       s.display_name,
       coalesce(s.civi_in, false) AS civi_in,
       s.gc_status,
       s.history_status,
       s.civicrm_changed,
       coalesce(s.has_history, false) AS has_history,
       coalesce(s.history_undated, false) AS history_undated,
       coalesce(s.consent_withheld, false) AS consent_withheld,
       s.consent_words,
       r.best_email,
       r.best_norm,
       -- R2: the contact's MC-in members, less this one if it is MC-in itself. R2 rows are
       -- MC-out, so in_email then names another member.
       coalesce(ci.n_in - CASE WHEN r.mc_in THEN 1 ELSE 0 END > 0, false) AS other_member_in,
       ci.in_email AS other_in_email,
       ci.latest_in_changed,
       ci.latest_in_email,
       -- R6: the best email is already a member; on a contact's own row that member was matched
       -- to another contact (had it matched this one, the contact would have no row of its own).
       ao.member_contact IS NOT NULL AS best_email_is_member,
       -- R6: no member has it, but a lower-id contact in the group has the same best email.
       coalesce(ao.member_contact IS NULL AND ao.add_contact <> r.contact_id, false)
           AS best_email_added_for_other,
       coalesce(ao.member_contact,
                CASE WHEN ao.add_contact <> r.contact_id THEN ao.add_contact END) AS shared_with,
       -- R7: the member's address is on hold anywhere in CiviCRM.
       coalesce(ad.on_hold, false) AS member_on_hold,
       CASE WHEN r.member_id IS NOT NULL THEN coalesce(r.n_owners, 0) > 1
            ELSE coalesce(ao.n_owners, 0) > 1
       END AS duplicate_contacts,
       coalesce(ad.trashed, false) AS contact_deleted
FROM p_rows r
LEFT JOIN c_state s ON s.contact_id = r.contact_id
LEFT JOIN m_contact_in ci ON ci.contact_id = r.contact_id
LEFT JOIN c_addr ad ON ad.norm = r.norm
LEFT JOIN c_addr_owner ao ON r.member_id IS NULL AND ao.norm = r.best_norm;
