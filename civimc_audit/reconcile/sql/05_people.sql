-- Step 5 — who gets a row (DESIGN "Who gets a row"): every member of the audience, any status,
-- and every live contact with a group_contact row or any history row for the group that no
-- member matched (the candidates for R6 and R10 with Mailchimp absent). Each row gathers both
-- sides' state and the facts the exceptions test:
--   other_member_in / other_in_email   R2 other_email_subscribed
--   best_email_is_member / shared_with R6 email_shared_with_other_contact
--   member_on_hold                     R7 email_on_hold
--   duplicate_contacts, contact_deleted  the flags of the same names
CREATE OR REPLACE TEMP TABLE people AS
WITH rows AS (
    SELECT m.member_id, mm.contact_id, mm.n_owners, mm.match_step
    FROM m_member m LEFT JOIN m_match mm USING (member_id)
    UNION ALL
    SELECT NULL, s.contact_id, NULL, NULL
    FROM c_state s
    WHERE s.in_population
      AND NOT EXISTS (SELECT 1 FROM m_match mm WHERE mm.contact_id = s.contact_id)
), member_owner AS (
    -- the contact each member's address was matched to (R6: another contact's member)
    SELECT m.norm, min(mm.contact_id) AS contact_id
    FROM m_member m JOIN m_match mm USING (member_id)
    GROUP BY m.norm
), owners AS (
    SELECT norm, count(*) AS n FROM c_owner GROUP BY norm
)
SELECT r.member_id,
       r.contact_id,
       r.match_step,
       m.email_address,
       m.norm AS member_norm,
       m.status AS mailchimp_status,
       m.last_changed AS mailchimp_changed,
       coalesce(m.mc_in, false) AS mc_in,
       r.member_id IS NOT NULL AS has_member,
       c.display_name,
       coalesce(s.civi_in, false) AS civi_in,
       s.gc_status,
       s.history_status,
       s.civicrm_changed,
       coalesce(s.has_history, false) AS has_history,
       coalesce(s.consent_withheld, false) AS consent_withheld,
       s.consent_words,
       b.best_email,
       b.best_norm,
       -- R2: another member matched to the same contact is MC-in. (The window counts this
       -- row too, so it is taken off; R2 rows are MC-out, so min() never names this row.)
       coalesce(r.contact_id IS NOT NULL AND
                count(*) FILTER (WHERE m.mc_in) OVER (PARTITION BY r.contact_id)
                  - CASE WHEN m.mc_in THEN 1 ELSE 0 END > 0, false) AS other_member_in,
       CASE WHEN r.contact_id IS NOT NULL THEN
           min(m.email_address) FILTER (WHERE m.mc_in) OVER (PARTITION BY r.contact_id)
       END AS other_in_email,
       -- R6: the best email is already a member; on a contact's own row that member was matched
       -- to another contact (had it matched this one, the contact would have no row of its own).
       mo.contact_id IS NOT NULL AS best_email_is_member,
       mo.contact_id AS shared_with,
       -- R7: the member's address is on hold anywhere in CiviCRM.
       coalesce(m.norm IN (SELECT norm FROM c_on_hold), false) AS member_on_hold,
       CASE WHEN r.member_id IS NOT NULL THEN coalesce(r.n_owners, 0) > 1
            ELSE coalesce(ob.n, 0) > 1
       END AS duplicate_contacts,
       coalesce(m.norm IN (SELECT norm FROM c_trashed_email), false) AS contact_deleted
FROM rows r
LEFT JOIN m_member m USING (member_id)
LEFT JOIN c_contact c ON c.contact_id = r.contact_id
LEFT JOIN c_state s ON s.contact_id = r.contact_id
LEFT JOIN c_best b ON b.contact_id = r.contact_id
LEFT JOIN member_owner mo ON r.member_id IS NULL AND mo.norm = b.best_norm
LEFT JOIN owners ob ON r.member_id IS NULL AND ob.norm = b.best_norm;
